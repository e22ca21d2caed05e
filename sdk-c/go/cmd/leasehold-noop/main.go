// Command leasehold-noop is a Go SDK worker with a no-op handler, for bench/sdk-ratio (compared
// with the Rust SDK's bench/src/bin/sdk_noop.rs and the Python SDK's bench/sdk_noop.py):
//
//	leasehold-noop URL QUEUE CONCURRENCY
//
// It prints "ready", runs until SIGTERM or Ctrl-C, then drains. For measurements, link the
// release library: cargo build --release -p leasehold-c, then (in sdk-c/go)
// CGO_LDFLAGS="-L$PWD/../../target/release" go build ./cmd/leasehold-noop.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	leasehold "example.invalid/leasehold/sdk-c/go"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: leasehold-noop URL QUEUE CONCURRENCY")
		os.Exit(2)
	}
	concurrency, err := strconv.Atoi(os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, "CONCURRENCY must be a number:", err)
		os.Exit(2)
	}
	w, err := leasehold.NewWorker(leasehold.Config{URL: os.Args[1], Queues: []string{os.Args[2]}, Concurrency: concurrency})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	w.Handle("noop", func(ctx context.Context, job *leasehold.Job) (any, error) { return nil, nil })
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Println("ready")
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
