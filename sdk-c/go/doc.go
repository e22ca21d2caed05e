// Package leasehold is the Go SDK of Leasehold, a job coordinator: workers that lease jobs,
// keep them alive with heartbeats, report checkpoints, progress and artifacts, and end each
// job exactly once; and a Client that enqueues, inspects, cancels and waits for jobs, and for
// operators lists jobs, runs and workers, cancels or replays the jobs a filter selects, and reads
// job statistics, failure classes and SLO reports.
//
// It is a thin skin over the C ABI of the Rust worker SDK (sdk-c, libleasehold_c.a): every
// protocol behaviour — the WebSocket/long-poll transport, credit, coalesced heartbeats,
// fencing, batched outcomes, retry delays, artifact hashing, drain — runs in Rust, on threads
// Rust owns. This package converts types, maps errors and manages lifetimes.
//
// Build the Rust library first (once, from the repository root):
//
//	cargo build -p leasehold-c
//
// The package links target/debug/libleasehold_c.a; to link another build, put its directory
// first on the search path: CGO_LDFLAGS="-L$PWD/target/release" go build ./...
// Go's build cache does not notice a rebuilt C library; after changing the Rust code, link
// with CGO_LDFLAGS="$(scripts/cgo-ldflags target/debug)" or run go clean -cache.
//
// A worker:
//
//	w, err := leasehold.NewWorker(leasehold.Config{URL: "http://127.0.0.1:7070", Queues: []string{"emails"}})
//	w.Handle("send", func(ctx context.Context, job *leasehold.Job) (any, error) {
//		var in struct{ To string `json:"to"` }
//		if err := job.Decode(&in); err != nil {
//			return nil, err // already a Fatal error: another attempt would see the same payload
//		}
//		if err := send(ctx, in.To); err != nil {
//			return nil, leasehold.RetryAfter(time.Minute, err)
//		}
//		return map[string]any{"sent": true}, nil
//	})
//	err = w.Run(ctx) // until ctx is cancelled; then drains
//
// A handler's ctx is cancelled when the job is cancelled by an operator, when its lease is lost
// or expires, when its run time (JobSpec.Timeout) is running out, and when the worker shuts
// down; context.Cause(ctx) says which (ErrCancelRequested, ErrLeaseLost, ErrLeaseExpired,
// ErrTimedOut, ErrShutdown).
package leasehold
