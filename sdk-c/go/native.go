package leasehold

/*
#cgo CFLAGS: -I${SRCDIR}/../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/debug -l:libleasehold_c.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
#include "leasehold.h"
*/
import "C"

import (
	"context"
	"errors"
	"runtime"
	"unsafe"
)

// Crossing into C: every call that can fail runs on a locked OS thread, because the library
// keeps its last-error message per thread and a goroutine may otherwise move to another thread
// between the call and the read of the message.

// call runs f on a locked OS thread and turns a code other than LH_OK into an *Error carrying
// the thread's last-error details.
func call(f func() C.lh_result) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if rc := f(); rc != C.LH_OK {
		return lastError(rc)
	}
	return nil
}

func lastError(rc C.lh_result) *Error {
	e := &Error{Code: Code(rc)}
	if n := C.lh_last_error(nil, 0); n > 0 {
		buf := make([]byte, n+1)
		C.lh_last_error((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
		e.Message = string(buf[:n])
	}
	e.HTTPStatus = int(C.lh_last_error_http_status())
	if n := C.lh_last_error_api_code(nil, 0); n > 0 {
		buf := make([]byte, n+1)
		C.lh_last_error_api_code((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
		e.APICode = string(buf[:n])
	}
	return e
}

// cstr lends the bytes of s to C for the duration of a call (no copy; C only reads them, and
// Go string memory holds no Go pointers). Empty strings go as NULL with length 0.
func cstr(s string) (*C.char, C.size_t) {
	if len(s) == 0 {
		return nil, 0
	}
	return (*C.char)(unsafe.Pointer(unsafe.StringData(s))), C.size_t(len(s))
}

// cbytes lends b to C for the duration of a call.
func cbytes(b []byte) (*C.char, C.size_t) {
	if len(b) == 0 {
		return nil, 0
	}
	return (*C.char)(unsafe.Pointer(&b[0])), C.size_t(len(b))
}

// gostr copies a string borrowed from the library.
func gostr(s C.lh_str) string {
	if s.data == nil {
		return ""
	}
	return C.GoStringN(s.data, C.int(s.len))
}

// takeBytes copies bytes the library handed over and frees them.
func takeBytes(b *C.lh_bytes) []byte {
	if b.data == nil {
		return nil
	}
	out := C.GoBytes(unsafe.Pointer(b.data), C.int(b.len))
	C.lh_bytes_free(b)
	return out
}

// withCancel makes a blocking native call cancellable by ctx: it passes f an lh_cancel that a
// context.AfterFunc fires when ctx is done, always waits for the native call to return, and
// then reports ctx.Err() if the call was cut short. With a context that can never be cancelled,
// f gets NULL and nothing extra is allocated.
func withCancel(ctx context.Context, f func(cancel *C.lh_cancel) C.lh_result) error {
	if ctx.Done() == nil {
		return call(func() C.lh_result { return f(nil) })
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var cancel *C.lh_cancel
	if err := call(func() C.lh_result { return C.lh_cancel_new(&cancel) }); err != nil {
		return err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		C.lh_cancel_fire(cancel)
		close(fired)
	})
	err := call(func() C.lh_result { return f(cancel) })
	if !stop() {
		<-fired // the AfterFunc started: let it finish before the token is freed
	}
	C.lh_cancel_free(cancel)
	var e *Error
	if errors.As(err, &e) && e.Code == CodeCancelled && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
