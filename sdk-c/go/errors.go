package leasehold

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Code is a result code of the C ABI (lh_result in leasehold.h); the numbers are stable.
type Code int

// The codes an *Error can carry.
const (
	CodeTimeout         Code = 1
	CodeClosed          Code = 2
	CodeCancelled       Code = 3
	CodeNullArgument    Code = 10
	CodeInvalidArgument Code = 11
	CodeInvalidJSON     Code = 12
	CodeAlreadyEnded    Code = 13
	CodeNotFound        Code = 14
	CodeUnreachable     Code = 20
	CodeCoordinator     Code = 21
	CodeLeaseLost       Code = 22
	CodeProtocol        Code = 23
	CodeUnsupported     Code = 24
	CodeIO              Code = 30
	CodePanic           Code = 90
	CodeInternal        Code = 91
)

// Sentinels for errors.Is. An *Error matches the sentinel of its Code.
var (
	// ErrTimeout: nothing happened within the time limit (the job is not terminal yet, the
	// coordinator did not answer in time).
	ErrTimeout = errors.New("leasehold: timed out")
	// ErrClosed: the worker, job or client is closed or shut down.
	ErrClosed = errors.New("leasehold: closed")
	// ErrInvalidArgument: an argument or configuration value was rejected before anything was
	// sent (including malformed JSON).
	ErrInvalidArgument = errors.New("leasehold: invalid argument")
	// ErrAlreadyEnded: the job was already completed, failed, cancelled or released.
	ErrAlreadyEnded = errors.New("leasehold: job already ended")
	// ErrNotFound: the coordinator does not know the job.
	ErrNotFound = errors.New("leasehold: not found")
	// ErrUnreachable: the coordinator could not be reached, after the SDK's own retries.
	ErrUnreachable = errors.New("leasehold: coordinator unreachable")
	// ErrCoordinator: the coordinator answered with an error (see Error.HTTPStatus and
	// Error.APICode).
	ErrCoordinator = errors.New("leasehold: coordinator error")
	// ErrLeaseLost: the lease on the job is gone; whatever the handler produces is dropped.
	// Also the cause of a handler's context in that case (ErrLeaseExpired wraps it).
	ErrLeaseLost = errors.New("leasehold: lease lost")
	// ErrInternal: a failure inside the library (protocol, I/O, panic); see the message.
	ErrInternal = errors.New("leasehold: internal error")
)

// Causes of a handler's context cancellation, from context.Cause(ctx).
var (
	// ErrCancelRequested: an operator cancelled the job. Return (any error); the job is
	// recorded cancelled.
	ErrCancelRequested = errors.New("leasehold: job cancelled")
	// ErrLeaseExpired: the coordinator stayed unreachable past the lease deadline; the lease is
	// presumed gone. errors.Is(err, ErrLeaseLost) is true.
	ErrLeaseExpired = fmt.Errorf("%w: expired while the coordinator was unreachable", ErrLeaseLost)
	// ErrTimedOut: the attempt's run time is running out (JobSpec.Timeout, else the queue's
	// default). Whatever the handler returns, the worker reports a retryable failure of class
	// "timeout". errors.Is(err, ErrLeaseLost) is true: the handler should stop, as on lease loss.
	ErrTimedOut = fmt.Errorf("%w: run time exceeded", ErrLeaseLost)
	// ErrShutdown: the worker is shutting down past its drain timeout and gave the job back
	// (no attempt spent).
	ErrShutdown = errors.New("leasehold: worker shutting down")
)

// Error is a failure reported by the native library.
type Error struct {
	Code       Code
	Message    string
	HTTPStatus int    // the coordinator's HTTP status, when it answered with an error
	APICode    string // the coordinator's error code (not_found, lease_lost, …), when it sent one
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("leasehold: error %d", e.Code)
	}
	return "leasehold: " + e.Message
}

// Unwrap gives the sentinel of the code, so that errors.Is(err, ErrNotFound) works.
func (e *Error) Unwrap() error {
	switch e.Code {
	case CodeTimeout:
		return ErrTimeout
	case CodeClosed:
		return ErrClosed
	case CodeCancelled:
		return context.Canceled
	case CodeNullArgument, CodeInvalidArgument, CodeInvalidJSON:
		return ErrInvalidArgument
	case CodeAlreadyEnded:
		return ErrAlreadyEnded
	case CodeNotFound:
		return ErrNotFound
	case CodeUnreachable:
		return ErrUnreachable
	case CodeCoordinator:
		return ErrCoordinator
	case CodeLeaseLost:
		return ErrLeaseLost
	default:
		return ErrInternal
	}
}

// FatalError is what a handler returns when no attempt can succeed (bad input, unknown kind):
// the job ends dead at once.
type FatalError struct {
	Class string // recorded with the failure; "fatal" when empty
	Err   error
}

func (e *FatalError) Error() string { return "fatal: " + errString(e.Err) }
func (e *FatalError) Unwrap() error { return e.Err }

// Fatal marks err as fatal: the job is not retried.
func Fatal(err error) error { return &FatalError{Err: err} }

// RetryAfterError is what a handler returns to be tried again after a given delay (instead of
// the retry policy's), while attempts remain.
type RetryAfterError struct {
	After time.Duration
	Class string // recorded with the failure; "error" when empty
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %v: %s", e.After, errString(e.Err))
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter asks for another attempt after d.
func RetryAfter(d time.Duration, err error) error { return &RetryAfterError{After: d, Err: err} }

// Throttled reports that the upstream the job calls throttled it (HTTP 429, a quota): a
// retryable failure of class "throttled", tried again after d. The tenant's adaptive rate limits
// the job falls under slow down when they see it (AIMD; docs/flow-control.md).
func Throttled(d time.Duration, err error) error {
	return &RetryAfterError{After: d, Class: "throttled", Err: err}
}

// Classifier may be implemented by handler errors to choose the error class recorded with a
// failure (for example an exception-like type name). Any other error is recorded as "error" and
// retried with the retry policy's delay.
type Classifier interface {
	ErrorClass() string
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
