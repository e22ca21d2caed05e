package leasehold

// #include "leasehold.h"
import "C"

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
)

// State is where a job is in its life.
type State string

// The job states.
const (
	StateBlocked   State = "blocked"
	StateQueued    State = "queued"
	StateLeased    State = "leased"
	StateSucceeded State = "succeeded"
	StateDead      State = "dead"
	StateCancelled State = "cancelled"
)

// Terminal reports whether the state is final (succeeded, dead, cancelled).
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateDead || s == StateCancelled
}

// Backoff is a job's own retry policy, echoed to workers with each lease.
type Backoff struct {
	InitialMS  uint64  `json:"initial_ms"`
	Multiplier float64 `json:"multiplier"`
	MaxDelayMS uint64  `json:"max_delay_ms"`
}

// JobSpec is a job to enqueue. Kind is required; Queue defaults to "default".
type JobSpec struct {
	Queue       string     `json:"queue,omitempty"`
	Kind        string     `json:"kind"`
	Payload     any        `json:"payload"`
	Priority    int        `json:"priority,omitempty"`     // -1000..1000, higher first
	MaxAttempts int        `json:"max_attempts,omitempty"` // default 25
	RunAt       *time.Time `json:"run_at,omitempty"`
	// IdempotencyKey: a second enqueue with the same key returns the first job. Without one the
	// client makes a fresh key per call (so its own retries never make two jobs).
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// DeterministicKey derives the key from queue, kind and payload (leasehold-idem-v1).
	DeterministicKey bool     `json:"deterministic_key,omitempty"`
	CorrelationID    string   `json:"correlation_id,omitempty"`
	Project          string   `json:"project,omitempty"`
	Tenant           string   `json:"tenant,omitempty"`
	Backoff          *Backoff `json:"backoff,omitempty"`
	// Timeout is the longest one attempt may run (whole milliseconds, 1 s to 7 days; on the
	// wire "timeout_ms"): shortly before it runs out the handler's ctx is cancelled with cause
	// ErrTimedOut and the attempt fails with class "timeout", retried like any failure. Zero:
	// the queue's default timeout, else none.
	Timeout time.Duration `json:"-"`
	// LimitKeys are keys the tenant's limits apply to besides the job's queue and kind, each
	// "<prefix>:<value>" such as "host:api.example.com" (at most 8; docs/flow-control.md).
	LimitKeys []string `json:"limit_keys,omitempty"`
}

// specJSON is JobSpec's wire form: its fields plus "timeout_ms".
type specJSON struct {
	plainSpec
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
}

type plainSpec JobSpec // the same fields, without JobSpec's JSON methods

// MarshalJSON writes the job spec as the coordinator takes it (Timeout as "timeout_ms").
func (s JobSpec) MarshalJSON() ([]byte, error) {
	return json.Marshal(specJSON{plainSpec(s), s.Timeout.Milliseconds()})
}

// UnmarshalJSON decodes a job spec strictly: a key JobSpec does not know (a misspelt
// "max_atempts", say) is an error naming it, as the coordinator and the C ABI refuse it, so a
// typo in a spec read from a file never silently changes what runs.
func (s *JobSpec) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p specJSON
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("leasehold: job spec: %w", err)
	}
	if dec.More() {
		return errors.New("leasehold: job spec: trailing data after the JSON object")
	}
	*s = JobSpec(p.plainSpec)
	s.Timeout = time.Duration(p.TimeoutMS) * time.Millisecond
	return nil
}

// JobError is the last failure recorded on a job.
type JobError struct {
	Class     string `json:"class"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
}

// JobRecord is a job as the coordinator stores it.
type JobRecord struct {
	ID              string          `json:"id"`
	Tenant          string          `json:"tenant"`
	Queue           string          `json:"queue"`
	Kind            string          `json:"kind"`
	State           State           `json:"state"`
	Payload         json.RawMessage `json:"payload"`
	Priority        int             `json:"priority"`
	Attempt         int             `json:"attempt"`
	MaxAttempts     int             `json:"max_attempts"`
	FencingToken    int64           `json:"fencing_token"`
	RunAt           time.Time       `json:"run_at"`
	CreatedAt       time.Time       `json:"created_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
	StartedAt       *time.Time      `json:"started_at"`
	FinishedAt      *time.Time      `json:"finished_at"`
	LeaseExpiresAt  *time.Time      `json:"lease_expires_at"`
	IdempotencyKey  string          `json:"idempotency_key"`
	CorrelationID   string          `json:"correlation_id"`
	Project         string          `json:"project"`
	RunID           string          `json:"run_id"`
	InputsHash      string          `json:"inputs_hash"`
	Backoff         *Backoff        `json:"backoff"`
	TimeoutMS       *int64          `json:"timeout_ms"`  // the job's own timeout, if it has one
	DeadlineAt      *time.Time      `json:"deadline_at"` // the run-time deadline of its latest attempt
	WorkerID        string          `json:"worker_id"`
	WorkerVersion   string          `json:"worker_version"`
	CancelRequested bool            `json:"cancel_requested"`
	CancelReason    string          `json:"cancel_reason"`
	Checkpoint      json.RawMessage `json:"checkpoint"`
	Progress        json.RawMessage `json:"progress"`
	Result          json.RawMessage `json:"result"`
	LastError       *JobError       `json:"last_error"`
	Artifacts       []Artifact      `json:"artifacts"`
	// Replayed is set by Enqueue and EnqueueMany: the idempotency key matched an earlier job,
	// which is returned.
	Replayed bool `json:"replayed"`
}

// QueueDepth counts a queue's jobs per state.
type QueueDepth struct {
	Blocked   int64 `json:"blocked"`
	Queued    int64 `json:"queued"`
	Leased    int64 `json:"leased"`
	Succeeded int64 `json:"succeeded"`
	Dead      int64 `json:"dead"`
	Cancelled int64 `json:"cancelled"`
}

// QueueInfo is one queue and its depth.
type QueueInfo struct {
	Name   string     `json:"name"`
	Paused bool       `json:"paused"`
	Depth  QueueDepth `json:"depth"`
}

// ClientConfig configures a Client. URL is required.
type ClientConfig struct {
	URL     string
	APIKey  string
	Tenant  string
	Timeout time.Duration // one HTTP request (default 30s)
	// RetryPolicy for transport faults and 429/502/503/504 (default: 100 ms doubling to 5 s,
	// 6 attempts).
	RetryPolicy *RetryPolicy
}

// Client enqueues, inspects, cancels and waits for jobs. Safe for concurrent use. Every call
// retries transport faults with jittered backoff (in the native library) and takes a ctx that
// cancels it.
type Client struct {
	mu      sync.RWMutex
	ptr     *C.lh_client // nil once closed
	cleanup runtime.Cleanup
}

// NewClient makes a client; nothing is sent yet.
func NewClient(cfg ClientConfig) (*Client, error) {
	m := map[string]any{"url": cfg.URL}
	if cfg.APIKey != "" {
		m["api_key"] = cfg.APIKey
	}
	if cfg.Tenant != "" {
		m["tenant"] = cfg.Tenant
	}
	if cfg.Timeout > 0 {
		m["timeout_ms"] = cfg.Timeout.Milliseconds()
	}
	if cfg.RetryPolicy != nil {
		m["retry_policy"] = cfg.RetryPolicy.native()
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var ptr *C.lh_client
	if err := call(func() C.lh_result {
		p, n := cbytes(data)
		return C.lh_client_new(p, n, &ptr)
	}); err != nil {
		return nil, err
	}
	c := &Client{ptr: ptr}
	c.cleanup = runtime.AddCleanup(c, func(p *C.lh_client) { C.lh_client_free(p) }, ptr)
	return c, nil
}

// Close frees the native client. Idempotent; calls after it return ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr == nil {
		return nil
	}
	c.cleanup.Stop()
	C.lh_client_free(c.ptr)
	c.ptr = nil
	return nil
}

var errClientClosed = &Error{Code: CodeClosed, Message: "the client is closed"}

// do runs one cancellable native call that answers JSON, and decodes the answer into out.
func (c *Client) do(ctx context.Context, out any, f func(p *C.lh_client, cancel *C.lh_cancel, b *C.lh_bytes) C.lh_result) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return errClientClosed
	}
	var answer []byte
	err := withCancel(ctx, func(cancel *C.lh_cancel) C.lh_result {
		var b C.lh_bytes
		rc := f(c.ptr, cancel, &b)
		answer = takeBytes(&b)
		return rc
	})
	runtime.KeepAlive(c)
	if err != nil {
		return err
	}
	return json.Unmarshal(answer, out)
}

// Enqueue enqueues one job (safe to retry: one idempotency key per call).
func (c *Client) Enqueue(ctx context.Context, spec JobSpec) (JobRecord, error) {
	var out JobRecord
	body, err := json.Marshal(spec)
	if err != nil {
		return out, err
	}
	err = c.do(ctx, &out, func(p *C.lh_client, cancel *C.lh_cancel, b *C.lh_bytes) C.lh_result {
		ptr, n := cbytes(body)
		return C.lh_client_enqueue(p, ptr, n, cancel, b)
	})
	return out, err
}

// EnqueueMany enqueues jobs in order, 1000 per transaction.
func (c *Client) EnqueueMany(ctx context.Context, specs []JobSpec) ([]JobRecord, error) {
	var out []JobRecord
	body, err := json.Marshal(specs)
	if err != nil {
		return nil, err
	}
	err = c.do(ctx, &out, func(p *C.lh_client, cancel *C.lh_cancel, b *C.lh_bytes) C.lh_result {
		ptr, n := cbytes(body)
		return C.lh_client_enqueue_many(p, ptr, n, cancel, b)
	})
	return out, err
}

// Get fetches a job; errors.Is(err, ErrNotFound) when the coordinator does not know it.
func (c *Client) Get(ctx context.Context, id string) (JobRecord, error) {
	var out JobRecord
	err := c.do(ctx, &out, func(p *C.lh_client, cancel *C.lh_cancel, b *C.lh_bytes) C.lh_result {
		ip, in := cstr(id)
		return C.lh_client_get(p, ip, in, cancel, b)
	})
	return out, err
}

// Cancel cancels a job: at once when queued, at its next heartbeat when leased (the handler's
// ctx is then cancelled with ErrCancelRequested). Cancelling a cancelled job is not an error.
func (c *Client) Cancel(ctx context.Context, id, reason string) (JobRecord, error) {
	var out JobRecord
	err := c.do(ctx, &out, func(p *C.lh_client, cancel *C.lh_cancel, b *C.lh_bytes) C.lh_result {
		ip, in := cstr(id)
		rp, rn := cstr(reason)
		return C.lh_client_cancel(p, ip, in, rp, rn, cancel, b)
	})
	return out, err
}

// Retry sends a dead or cancelled job back to queued with a fresh attempt budget.
func (c *Client) Retry(ctx context.Context, id string) (JobRecord, error) {
	var out JobRecord
	err := c.do(ctx, &out, func(p *C.lh_client, cancel *C.lh_cancel, b *C.lh_bytes) C.lh_result {
		ip, in := cstr(id)
		return C.lh_client_retry(p, ip, in, cancel, b)
	})
	return out, err
}

// Wait waits until the job is terminal and returns it. It waits until ctx's deadline (or
// without limit): at the deadline it fails with an *Error of CodeTimeout (errors.Is(err,
// ErrTimeout)) naming the job's state then, e.g. "job 0192… still queued after 1m0s (attempt 0
// of 25)" (a job still queued usually has no worker on its queue). Cancelling ctx stops it with
// ctx.Err().
func (c *Client) Wait(ctx context.Context, id string) (JobRecord, error) {
	var out JobRecord
	timeout := int64(-1)
	callCtx := ctx
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d).Milliseconds(), 0)
		// The native wait ends at the deadline itself, saying how far the job got; only a
		// cancellation of ctx before then interrupts it.
		var stop context.CancelFunc
		callCtx, stop = cancelOnly(ctx)
		defer stop()
	}
	err := c.do(callCtx, &out, func(p *C.lh_client, cancel *C.lh_cancel, b *C.lh_bytes) C.lh_result {
		ip, in := cstr(id)
		return C.lh_client_wait(p, ip, in, C.int64_t(timeout), cancel, b)
	})
	return out, err
}

// cancelOnly is a context cancelled when ctx is cancelled, but not when ctx's deadline passes.
func cancelOnly(ctx context.Context) (context.Context, context.CancelFunc) {
	out, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cancel()
		}
	})
	return out, func() {
		stop()
		cancel()
	}
}

// Queues lists every queue with its depth per state.
func (c *Client) Queues(ctx context.Context) ([]QueueInfo, error) {
	var out []QueueInfo
	err := c.do(ctx, &out, func(p *C.lh_client, cancel *C.lh_cancel, b *C.lh_bytes) C.lh_result {
		return C.lh_client_queues(p, cancel, b)
	})
	return out, err
}
