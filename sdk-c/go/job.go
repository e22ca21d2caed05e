package leasehold

// #include "leasehold.h"
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Artifact is one entry of a job's artifact manifest: content-addressed bytes stored by the
// coordinator.
type Artifact struct {
	Name      string `json:"name"`
	Digest    string `json:"digest"` // sha256:<64 lowercase hex> of the bytes
	Size      uint64 `json:"size"`
	MediaType string `json:"media_type"`
}

// Job is a leased job as a handler sees it. The worker ends it from the handler's return value
// and closes it when the handler returns; it must not be used after that (its methods then
// return ErrClosed). All methods are safe for concurrent use.
type Job struct {
	mu      sync.RWMutex
	ptr     *C.lh_job // nil once closed
	cleanup runtime.Cleanup

	id, kind, queue, tenant, idempotencyKey, correlationID string
	payload                                                []byte
	attempt, maxAttempts                                   int
	fencingToken                                           int64
	tag                                                    uint64
}

// newJob wraps a job handle from lh_worker_next, copying its fixed fields. The handle is freed
// by Close, or by a cleanup if the Job is garbage collected first.
func newJob(ptr *C.lh_job) (*Job, error) {
	var info C.lh_job_info
	if err := call(func() C.lh_result { return C.lh_job_get_info(ptr, &info) }); err != nil {
		C.lh_job_free(ptr)
		return nil, err
	}
	j := &Job{
		ptr:            ptr,
		id:             gostr(info.id),
		kind:           gostr(info.kind),
		queue:          gostr(info.queue),
		tenant:         gostr(info.tenant),
		payload:        []byte(gostr(info.payload)),
		idempotencyKey: gostr(info.idempotency_key),
		correlationID:  gostr(info.correlation_id),
		attempt:        int(info.attempt),
		maxAttempts:    int(info.max_attempts),
		fencingToken:   int64(info.fencing_token),
		tag:            uint64(info.tag),
	}
	j.cleanup = runtime.AddCleanup(j, func(p *C.lh_job) { C.lh_job_free(p) }, ptr)
	return j, nil
}

var errJobClosed = &Error{Code: CodeClosed, Message: "the job handle is closed (its handler returned)"}

// with runs f on the live handle, holding it open for the duration.
func (j *Job) with(f func(p *C.lh_job) error) error {
	j.mu.RLock()
	defer j.mu.RUnlock()
	if j.ptr == nil {
		return errJobClosed
	}
	err := f(j.ptr)
	runtime.KeepAlive(j)
	return err
}

// Close frees the native job; a job not yet ended is released (no attempt spent). Idempotent.
func (j *Job) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.ptr == nil {
		return nil
	}
	j.cleanup.Stop()
	C.lh_job_free(j.ptr)
	j.ptr = nil
	return nil
}

// ID is the job id (a UUID).
func (j *Job) ID() string { return j.id }

// Kind is the handler name.
func (j *Job) Kind() string { return j.kind }

// Queue is the job's queue.
func (j *Job) Queue() string { return j.queue }

// Tenant is the tenant whose job it is (one of a shared pool's tenants).
func (j *Job) Tenant() string { return j.tenant }

// Payload is the job's input as JSON.
func (j *Job) Payload() json.RawMessage { return json.RawMessage(j.payload) }

// Decode unmarshals the payload into v. A payload that does not fit is a Fatal error (class
// bad_payload): another attempt would see the same payload.
func (j *Job) Decode(v any) error {
	if err := json.Unmarshal(j.payload, v); err != nil {
		return &FatalError{Class: "bad_payload", Err: fmt.Errorf("payload does not match the expected shape: %w", err)}
	}
	return nil
}

// Attempt is this attempt's number, from 1.
func (j *Job) Attempt() int { return j.attempt }

// MaxAttempts is the number of attempts allowed in all.
func (j *Job) MaxAttempts() int { return j.maxAttempts }

// IdempotencyKey is stable across attempts, for making side effects exactly-once downstream:
// the job's idempotency key if it was enqueued with one, else its id.
func (j *Job) IdempotencyKey() string { return j.idempotencyKey }

// CorrelationID is the job's correlation id, or "".
func (j *Job) CorrelationID() string { return j.correlationID }

// FencingToken is the lease's fencing token.
func (j *Job) FencingToken() int64 { return j.fencingToken }

// Checkpoint records v (marshalled to JSON) as the job's checkpoint, latest wins. The next
// heartbeat carries it; a later attempt receives it from LastCheckpoint.
func (j *Job) Checkpoint(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return j.with(func(p *C.lh_job) error {
		ptr, n := cbytes(data)
		return call(func() C.lh_result { return C.lh_job_checkpoint(p, ptr, n) })
	})
}

// Progress records v (marshalled to JSON) as the job's progress, latest wins; the next
// heartbeat carries it.
func (j *Job) Progress(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return j.with(func(p *C.lh_job) error {
		ptr, n := cbytes(data)
		return call(func() C.lh_result { return C.lh_job_progress(p, ptr, n) })
	})
}

// LastCheckpoint is the latest checkpoint as JSON: the one this attempt set last, else the one
// the previous attempt left; nil when there is none.
func (j *Job) LastCheckpoint() (json.RawMessage, error) {
	var out []byte
	err := j.with(func(p *C.lh_job) error {
		var b C.lh_bytes
		err := call(func() C.lh_result { return C.lh_job_last_checkpoint(p, &b) })
		out = takeBytes(&b)
		return err
	})
	if e, ok := err.(*Error); ok && e.Code == CodeNotFound {
		return nil, nil
	}
	return out, err
}

func decodeArtifact(b []byte) (Artifact, error) {
	var a Artifact
	err := json.Unmarshal(b, &a)
	return a, err
}

// PutArtifactFile uploads the file at path as artifact name (hashed in one pass, streamed in a
// second; the file must not change in between). mediaType "" means application/octet-stream.
// The completion lists it in the job's manifest; putting a name again replaces the entry.
// Blocks until uploaded; ctx cancels the wait.
func (j *Job) PutArtifactFile(ctx context.Context, name, mediaType, path string) (Artifact, error) {
	var out []byte
	err := j.with(func(p *C.lh_job) error {
		return withCancel(ctx, func(cancel *C.lh_cancel) C.lh_result {
			np, nn := cstr(name)
			mp, mn := cstr(mediaType)
			pp, pn := cstr(path)
			var b C.lh_bytes
			rc := C.lh_job_put_artifact_path(p, np, nn, mp, mn, pp, pn, cancel, &b)
			out = takeBytes(&b)
			return rc
		})
	})
	if err != nil {
		return Artifact{}, err
	}
	return decodeArtifact(out)
}

// PutArtifactBytes uploads data as artifact name; otherwise as PutArtifactFile.
func (j *Job) PutArtifactBytes(ctx context.Context, name, mediaType string, data []byte) (Artifact, error) {
	var out []byte
	err := j.with(func(p *C.lh_job) error {
		return withCancel(ctx, func(cancel *C.lh_cancel) C.lh_result {
			np, nn := cstr(name)
			mp, mn := cstr(mediaType)
			dp, dn := cbytes(data)
			var b C.lh_bytes
			rc := C.lh_job_put_artifact_buffer(p, np, nn, mp, mn, (*C.uint8_t)(unsafe.Pointer(dp)), dn, cancel, &b)
			out = takeBytes(&b)
			return rc
		})
	})
	if err != nil {
		return Artifact{}, err
	}
	return decodeArtifact(out)
}

// cancelCause is the cause of the job's cancellation, nil while it has not fired.
func (j *Job) cancelCause() error {
	var reason C.lh_cancel_reason
	if err := j.with(func(p *C.lh_job) error {
		return call(func() C.lh_result { return C.lh_job_cancel_reason(p, &reason) })
	}); err != nil {
		return nil
	}
	return causeOf(reason)
}

func causeOf(reason C.lh_cancel_reason) error {
	switch reason {
	case C.LH_CANCEL_NONE:
		return nil
	case C.LH_CANCEL_REQUESTED:
		return ErrCancelRequested
	case C.LH_CANCEL_LEASE_LOST:
		return ErrLeaseLost
	case C.LH_CANCEL_LEASE_EXPIRED:
		return ErrLeaseExpired
	case C.LH_CANCEL_TIMED_OUT:
		return ErrTimedOut
	default:
		return ErrShutdown
	}
}

// The endings, used by the worker.

// Endings a handler can have; what each means for the job is the core's to decide
// (lh_job_settle).
const (
	endingReturned  = C.LH_ENDING_RETURNED
	endingFailed    = C.LH_ENDING_FAILED
	endingPanicked  = C.LH_ENDING_PANICKED
	endingStopped   = C.LH_ENDING_STOPPED
	endingAbandoned = C.LH_ENDING_ABANDONED
)

// settle ends the job as the handler's ending means (the core decides: an operator's cancel, a
// lost lease and a timeout are weighed there, the same as for every skin).
func (j *Job) settle(ending C.uint32_t, result []byte, class, message string, retryable bool, after time.Duration) error {
	afterMS := int64(-1)
	if after >= 0 {
		afterMS = after.Milliseconds()
	}
	return j.with(func(p *C.lh_job) error {
		rp, rn := cbytes(result)
		cp, cn := cstr(class)
		mp, mn := cstr(message)
		return call(func() C.lh_result {
			return C.lh_job_settle(p, ending, rp, rn, cp, cn, mp, mn, C.bool(retryable), C.int64_t(afterMS))
		})
	})
}

// outcome waits up to timeout for the coordinator's answer to the job's outcome.
func (j *Job) outcome(timeout time.Duration) (ack int, state string, err error) {
	err = j.with(func(p *C.lh_job) error {
		var o C.lh_outcome
		err := call(func() C.lh_result { return C.lh_job_outcome(p, C.int64_t(timeout.Milliseconds()), &o) })
		if err == nil {
			ack, state = int(o.ack), gostr(o.state)
		}
		return err
	})
	return ack, state, err
}
