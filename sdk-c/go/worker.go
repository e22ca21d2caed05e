package leasehold

// #include "leasehold.h"
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Version of this package (the native library's is NativeVersion()).
const Version = "0.1.0"

// Transport selects how a worker talks to the coordinator.
type Transport string

const (
	// TransportAuto: WebSocket push, HTTP long-poll when the coordinator refuses the upgrade.
	TransportAuto Transport = "auto"
	// TransportWebSocket: WebSocket only (reconnecting forever).
	TransportWebSocket Transport = "websocket"
	// TransportHTTP: HTTP long-poll only.
	TransportHTTP Transport = "http"
)

// RetryPolicy is exponential backoff with full jitter (algorithm leasehold-retry-v1,
// proto/vectors/README.md). Zero fields take the SDK's defaults only as a whole: give all four.
type RetryPolicy struct {
	Initial     time.Duration // ceiling of the first delay
	Multiplier  float64       // growth of the ceiling per attempt (>= 1)
	MaxDelay    time.Duration // cap on any ceiling
	MaxAttempts int           // attempts in all, the first included
}

func (p RetryPolicy) native() map[string]any {
	return map[string]any{
		"initial_ms":   p.Initial.Milliseconds(),
		"multiplier":   p.Multiplier,
		"max_delay_ms": p.MaxDelay.Milliseconds(),
		"max_attempts": p.MaxAttempts,
	}
}

// Config configures a Worker. URL and Queues are required; zero values elsewhere mean the
// default, which for the runner's settings is the SDK core's (lh_worker_defaults; the same for
// the Rust, Python and Go workers).
type Config struct {
	URL           string         // coordinator base URL, http(s)://host:port
	Queues        []string       // queues to take jobs from
	Concurrency   int            // most jobs run at once (default 10)
	LeaseTTL      time.Duration  // lease length; heartbeats every third of it (default 30s)
	WorkerID      string         // stable worker id (default <hostname>-<pid>-<random>)
	AppVersion    string         // recorded with each outcome after the SDK versions
	Tenant        string         // default "default"
	Tenants       []string       // a worker pool shared by these tenants instead of one (needs the coordinator's own key)
	TenantWeights map[string]int // shares of the pool's tenants (1 to 1000, default 1)
	// Adaptive, when set, runs fewer jobs at once (down to Adaptive.Min) while they fail with
	// overload classes or run slow, and more again as they recover, up to Concurrency.
	Adaptive       *AdaptiveConcurrency
	APIKey         string        // sent as Authorization: Bearer …
	Transport      Transport     // default TransportAuto
	PollWait       time.Duration // longest HTTP long-poll (default 10s)
	RequestTimeout time.Duration // one HTTP request (default 30s)
	StagingDir     string        // where artifacts are staged while hashed (default the temp dir)
	RetryPolicy    *RetryPolicy  // for jobs without a backoff hint of their own
	DrainTimeout   time.Duration // on shutdown, how long running handlers may finish (default 30s)
	CancelGrace    time.Duration // how long a handler may ignore its cancelled ctx (default 5s)
	Threads        int           // threads of the native runtime (default 2)
	// DisablePrefetch turns off holding leases beyond the running jobs while jobs are short
	// (under 100 ms on average: about 50 ms of the handlers' work, at most three times
	// Concurrency), which lets a handler that ends start the next
	// job at once instead of a claim's round trip later. Never more than Concurrency handlers
	// run at once either way. Turn it off when another worker of the same queue should get
	// every job this one cannot start at once.
	DisablePrefetch bool
	Logger          *slog.Logger // handler failures and abandoned handlers (default slog.Default())
}

// AdaptiveConcurrency is how a Worker adapts how many jobs it runs at once (bounded AIMD, in
// the Rust core). The limit starts at Config.Concurrency. A failure of one of Classes (default
// "throttled" — see Throttled — and "timeout") halves it, at most once a second; a success
// slower than LatencyTarget (when set) lowers it by a tenth; other successes raise it by one per
// limit of them. It never goes below Min (at least 1).
type AdaptiveConcurrency struct {
	Min           int
	LatencyTarget time.Duration
	Classes       []string
}

// HandlerFunc handles one job. Return a result (marshalled to JSON) to complete the job, or an
// error to fail it: Fatal(err) ends it dead, RetryAfter(d, err) retries after d, any other
// error retries after the retry policy's delay. A panic is a retryable failure of class
// "panic". ctx is cancelled when the job is cancelled, its lease is lost or expires, or the
// worker shuts down; context.Cause(ctx) says which.
type HandlerFunc func(ctx context.Context, job *Job) (any, error)

// Worker runs handlers for the jobs it leases from the coordinator.
type Worker struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	handlers map[string]HandlerFunc
	started  bool
	closed   bool
	stop     chan struct{} // closed by Close
	runDone  chan struct{} // closed when Run returns
}

// NewWorker checks cfg and makes a worker. Nothing connects until Run.
func NewWorker(cfg Config) (*Worker, error) {
	if cfg.URL == "" {
		return nil, &Error{Code: CodeInvalidArgument, Message: "Config.URL is required"}
	}
	if len(cfg.Queues) == 0 {
		return nil, &Error{Code: CodeInvalidArgument, Message: "Config.Queues must name at least one queue"}
	}
	if cfg.Concurrency < 0 || cfg.LeaseTTL < 0 || cfg.DrainTimeout < 0 || cfg.CancelGrace < 0 || cfg.Threads < 0 {
		return nil, &Error{Code: CodeInvalidArgument, Message: "Config values must not be negative"}
	}
	// Unset settings take the SDK core's defaults (the same for every skin).
	d := C.lh_worker_defaults()
	if cfg.Concurrency == 0 {
		cfg.Concurrency = int(d.concurrency)
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = time.Duration(d.lease_ttl_ms) * time.Millisecond
	}
	if cfg.PollWait == 0 {
		cfg.PollWait = time.Duration(d.poll_wait_ms) * time.Millisecond
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = time.Duration(d.drain_timeout_ms) * time.Millisecond
	}
	if cfg.CancelGrace == 0 {
		cfg.CancelGrace = time.Duration(d.cancel_grace_ms) * time.Millisecond
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Worker{
		cfg:      cfg,
		log:      log,
		handlers: map[string]HandlerFunc{},
		stop:     make(chan struct{}),
		runDone:  make(chan struct{}),
	}, nil
}

// Handle registers the handler of kind. It panics on an empty kind, a nil handler or a second
// handler for the same kind (as net/http does), and must be called before Run.
func (w *Worker) Handle(kind string, h HandlerFunc) {
	if kind == "" || h == nil {
		panic("leasehold: Handle needs a kind and a handler")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, dup := w.handlers[kind]; dup {
		panic(fmt.Sprintf("leasehold: two handlers for kind %q", kind))
	}
	w.handlers[kind] = h
}

func (w *Worker) nativeConfig() map[string]any {
	c := w.cfg
	m := map[string]any{"url": c.URL, "queues": c.Queues, "cancel_events": true, "prefetch": !c.DisablePrefetch}
	app := "leasehold-go/" + Version
	if c.AppVersion != "" {
		app += " " + c.AppVersion
	}
	m["app_version"] = app
	if c.Concurrency > 0 {
		m["concurrency"] = c.Concurrency
	}
	if c.LeaseTTL > 0 {
		m["lease_ttl_ms"] = c.LeaseTTL.Milliseconds()
	}
	if c.WorkerID != "" {
		m["worker_id"] = c.WorkerID
	}
	if c.Tenant != "" {
		m["tenant"] = c.Tenant
	}
	if len(c.Tenants) > 0 {
		m["tenants"] = c.Tenants
	}
	if len(c.TenantWeights) > 0 {
		m["tenant_weights"] = c.TenantWeights
	}
	if a := c.Adaptive; a != nil {
		adaptive := map[string]any{"min": a.Min}
		if a.LatencyTarget > 0 {
			adaptive["latency_target_ms"] = a.LatencyTarget.Milliseconds()
		}
		if a.Classes != nil {
			adaptive["classes"] = a.Classes
		}
		m["adaptive_concurrency"] = adaptive
	}
	if c.APIKey != "" {
		m["api_key"] = c.APIKey
	}
	if c.Transport != "" {
		m["transport"] = string(c.Transport)
	}
	if c.PollWait > 0 {
		m["poll_wait_ms"] = c.PollWait.Milliseconds()
	}
	if c.RequestTimeout > 0 {
		m["request_timeout_ms"] = c.RequestTimeout.Milliseconds()
	}
	if c.StagingDir != "" {
		m["staging_dir"] = c.StagingDir
	}
	if c.RetryPolicy != nil {
		m["retry_policy"] = c.RetryPolicy.native()
	}
	if c.Threads > 0 {
		m["threads"] = c.Threads
	}
	return m
}

// Run connects, leases jobs and runs their handlers until ctx is cancelled or Close is called,
// then drains: no new leases; running handlers get Config.DrainTimeout to finish; the jobs still
// running after that are released (no attempt spent) and their handlers' ctx cancelled with
// ErrShutdown; outcomes are flushed. It returns nil after a drain, or the error that stopped the
// worker (a configuration the native library or the coordinator refused). Run may be called
// once.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.closed || w.started {
		w.mu.Unlock()
		return &Error{Code: CodeClosed, Message: "the worker was closed or has already run"}
	}
	w.started = true
	handlers := maps.Clone(w.handlers)
	w.mu.Unlock()
	defer close(w.runDone)

	cfg, err := json.Marshal(w.nativeConfig())
	if err != nil {
		return err
	}
	var native *C.lh_worker
	if err := call(func() C.lh_result {
		p, n := cbytes(cfg)
		return C.lh_worker_new(p, n, &native)
	}); err != nil {
		return err
	}
	r := &runner{
		w:        w,
		native:   native,
		handlers: handlers,
		base:     context.WithoutCancel(ctx),
		live:     map[uint64]*running{},
	}
	return r.run(ctx)
}

// Close stops a running Run (as cancelling its ctx does) and waits for it to return. A worker
// that never ran cannot run any more. Idempotent.
func (w *Worker) Close() error {
	w.mu.Lock()
	started := w.started
	if !w.closed {
		w.closed = true
		close(w.stop)
	}
	w.mu.Unlock()
	if started {
		<-w.runDone
	}
	return nil
}

// runner is one Run: the native worker and the handlers in flight.
type runner struct {
	w        *Worker
	native   *C.lh_worker
	handlers map[string]HandlerFunc
	base     context.Context // the parent of handler contexts: Run's ctx without its cancellation
	closing  atomic.Bool

	mu   sync.Mutex
	live map[uint64]*running // by job tag
	wg   sync.WaitGroup
}

type running struct {
	job    *Job
	cancel context.CancelCauseFunc
}

func (r *runner) run(ctx context.Context) error {
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		r.watchCancellations()
	}()
	// drain may run on other goroutines (ctx's AfterFunc, Close) until the very end, so it and
	// the final free are serialized: a drain after the free must not touch the handle.
	var nativeMu sync.Mutex
	freed := false
	draining := make(chan struct{})
	drain := func() {
		nativeMu.Lock()
		defer nativeMu.Unlock()
		if !freed {
			_ = call(func() C.lh_result { return C.lh_worker_drain(r.native) })
		}
		select {
		case <-draining:
		default:
			close(draining)
		}
	}
	stopOnCtx := context.AfterFunc(ctx, drain)
	pulled := make(chan struct{})
	go func() {
		select {
		case <-r.w.stop:
			drain()
		case <-pulled:
		}
	}()

	// One goroutine pulls; each job runs in a goroutine of its own, holding one of Concurrency
	// slots, taken before the job is pulled: prefetched leases (the native session may hold up
	// to four times Concurrency) wait in the session until a handler ends, and no OS thread is pinned
	// per slot in a blocking call.
	// Once draining, the pull goes on without waiting for a slot: the session gives no more
	// jobs, and learning that it closed is what starts the shutdown's DrainTimeout.
	var failure error
	slots := make(chan struct{}, r.w.cfg.Concurrency)
	for {
		release := func() { <-slots }
		select {
		case slots <- struct{}{}:
		case <-draining:
			release = func() {}
		}
		var ptr *C.lh_job
		err := call(func() C.lh_result { return C.lh_worker_next(r.native, -1, &ptr) })
		if err != nil {
			release()
			if !errors.Is(err, ErrClosed) {
				failure = err
			}
			break
		}
		job, err := newJob(ptr)
		if err != nil {
			release()
			r.w.log.Error("leasehold: cannot read a leased job", "error", err)
			continue
		}
		r.start(job, release)
	}
	close(pulled)
	stopOnCtx()

	var released C.size_t
	if err := call(func() C.lh_result {
		return C.lh_worker_shutdown(r.native, C.uint64_t(r.w.cfg.DrainTimeout.Milliseconds()), &released)
	}); err != nil {
		r.w.log.Error("leasehold: worker shutdown failed", "error", err)
	}
	if released > 0 {
		r.w.log.Warn("leasehold: drain timeout over; released the jobs still running", "released", int(released))
	}
	// Whatever still runs was released: its lease is gone.
	r.cancelAll(ErrShutdown)
	r.closing.Store(true)
	r.waitHandlers()
	<-watched
	nativeMu.Lock()
	freed = true
	C.lh_worker_free(r.native)
	nativeMu.Unlock()
	return failure
}

// watchCancellations cancels the ctx of each job whose native cancellation fires. One goroutine
// per worker blocks in lh_worker_next_cancellation (see sdk-c/README.md for why this and not
// polling or callbacks).
func (r *runner) watchCancellations() {
	for {
		var tag C.uint64_t
		err := call(func() C.lh_result { return C.lh_worker_next_cancellation(r.native, 1000, &tag) })
		switch {
		case err == nil:
			r.mu.Lock()
			run := r.live[uint64(tag)]
			r.mu.Unlock()
			if run != nil {
				run.cancel(run.job.cancelCause())
			}
		case errors.Is(err, ErrTimeout):
			if r.closing.Load() {
				return
			}
		default: // closed (or broken): nothing more will come
			return
		}
	}
}

// start runs job's handler in a goroutine of its own; done is called once it ended.
func (r *runner) start(job *Job, done func()) {
	ctx, cancel := context.WithCancelCause(r.base)
	run := &running{job: job, cancel: cancel}
	r.mu.Lock()
	r.live[job.tag] = run
	r.mu.Unlock()
	// A cancellation that fired before the job was registered was not seen by the watcher.
	if cause := job.cancelCause(); cause != nil {
		cancel(cause)
	}
	r.wg.Add(1)
	go func() {
		defer done()
		r.runJob(ctx, run)
	}()
}

func (r *runner) cancelAll(cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, run := range r.live {
		run.cancel(cause)
	}
}

// waitHandlers waits for the handlers in flight, at most CancelGrace once they are all
// cancelled (runJob itself abandons a handler that ignores its ctx for longer).
func (r *runner) waitHandlers() {
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * r.w.cfg.CancelGrace):
		r.w.log.Warn("leasehold: handlers still running after shutdown; not waiting for them")
	}
}

type panicError struct{ value any }

func (p *panicError) Error() string      { return fmt.Sprint(p.value) }
func (p *panicError) ErrorClass() string { return "panic" }

type handlerResult struct {
	value any
	err   error
}

func (r *runner) runJob(ctx context.Context, run *running) {
	defer r.wg.Done()
	job := run.job
	defer func() {
		r.mu.Lock()
		delete(r.live, job.tag)
		r.mu.Unlock()
		run.cancel(context.Canceled)
		_ = job.Close()
	}()
	h, ok := r.handlers[job.kind]
	if !ok {
		err := &FatalError{Class: "unknown_kind", Err: fmt.Errorf("no handler registered for kind %q on this worker", job.kind)}
		r.end(job, nil, err)
		return
	}
	done := make(chan handlerResult, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- handlerResult{err: &panicError{p}}
			}
		}()
		v, err := h(ctx, job)
		done <- handlerResult{v, err}
	}()
	var res handlerResult
	select {
	case res = <-done:
	case <-ctx.Done():
		select {
		case res = <-done:
		case <-time.After(r.w.cfg.CancelGrace):
			cause := context.Cause(ctx)
			r.w.log.Warn("leasehold: handler ignored its cancellation; abandoning it",
				"job_id", job.id, "kind", job.kind, "cause", cause)
			_ = job.settle(endingAbandoned, nil, "", "", false, -1)
			return
		}
	}
	r.end(job, res.value, res.err)
}

// end maps a handler's return to its ending; what that means for the job (an operator's
// cancel, a lost lease, a timeout) the core decides (lh_job_settle).
func (r *runner) end(job *Job, value any, herr error) {
	var err error
	var panicked *panicError
	switch {
	case herr == nil:
		data, merr := json.Marshal(value)
		if merr != nil {
			err = job.settle(endingFailed, nil, "bad_result", "cannot marshal the handler's result: "+merr.Error(), false, -1)
		} else {
			err = job.settle(endingReturned, data, "", "", false, -1)
		}
	case errors.As(herr, &panicked):
		r.w.log.Error("leasehold: handler panicked", "job_id", job.id, "kind", job.kind, "panic", panicked.Error())
		err = job.settle(endingPanicked, nil, "", panicked.Error(), true, -1)
	default:
		class, message, retryable, after := classify(herr)
		err = job.settle(endingFailed, nil, class, message, retryable, after)
	}
	if err != nil {
		r.w.log.Error("leasehold: cannot end job", "job_id", job.id, "error", err)
	}
}

// classify maps a handler error to (class, message, retryable, retry-after; -1 for the policy).
func classify(err error) (string, string, bool, time.Duration) {
	classOf := func(err error, def string) string {
		var c Classifier
		if errors.As(err, &c) {
			if s := c.ErrorClass(); s != "" {
				return s
			}
		}
		return def
	}
	var fatal *FatalError
	if errors.As(err, &fatal) {
		class := fatal.Class
		if class == "" {
			class = classOf(fatal.Err, "fatal")
		}
		return class, errString(fatal.Err), false, -1
	}
	var retry *RetryAfterError
	if errors.As(err, &retry) {
		class := retry.Class
		if class == "" {
			class = classOf(retry.Err, "error")
		}
		return class, errString(retry.Err), true, max(retry.After, 0)
	}
	return classOf(err, "error"), err.Error(), true, -1
}
