package leasehold

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestThroughputVersusRust measures no-op jobs per second through this package and through the
// Rust SDK's Worker (sdk-c/examples/noop_worker.rs), against the same coordinator and store, in
// one run, in the order Rust, Go, Go, Rust. Opt-in (it takes a while):
//
//	cargo build -p leasehold-coordinator -p leasehold-c --example noop_worker
//	LEASEHOLD_BENCH_JOBS=10000 go test -run TestThroughputVersusRust -v .
//
// LEASEHOLD_BENCH_CONCURRENCY (default 200) sets both workers' concurrency;
// LEASEHOLD_NOOP_BIN the Rust worker's path (default target/debug/examples/noop_worker).
func TestThroughputVersusRust(t *testing.T) {
	jobs, _ := strconv.Atoi(os.Getenv("LEASEHOLD_BENCH_JOBS"))
	if jobs <= 0 {
		t.Skip("set LEASEHOLD_BENCH_JOBS to run the throughput comparison")
	}
	concurrency := 200
	if c, err := strconv.Atoi(os.Getenv("LEASEHOLD_BENCH_CONCURRENCY")); err == nil && c > 0 {
		concurrency = c
	}
	noop := os.Getenv("LEASEHOLD_NOOP_BIN")
	if noop == "" {
		noop = filepath.Join("..", "..", "target", "debug", "examples", "noop_worker")
	}
	client := newClient(t)
	ctx := context.Background()

	enqueue := func(queue string) {
		specs := make([]JobSpec, jobs)
		for i := range specs {
			specs[i] = JobSpec{Queue: queue, Kind: "noop", Payload: map[string]int{"i": i}}
		}
		if _, err := client.EnqueueMany(ctx, specs); err != nil {
			t.Fatal(err)
		}
	}
	// untilDone polls the queue's depth until every job succeeded.
	untilDone := func(queue string) {
		deadline := time.Now().Add(10 * time.Minute)
		for {
			qs, err := client.Queues(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range qs {
				if q.Name == queue {
					if q.Depth.Succeeded == int64(jobs) {
						return
					}
					if q.Depth.Dead > 0 {
						t.Fatalf("%s: %d dead jobs", queue, q.Depth.Dead)
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not done after 10 minutes", queue)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	rust := func(queue string) float64 {
		enqueue(queue)
		cmd := exec.Command(noop, coordURL, queue, strconv.Itoa(concurrency))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatalf("%s: %v (build it with `cargo build -p leasehold-c --example noop_worker`)", noop, err)
		}
		if !bufio.NewScanner(out).Scan() {
			t.Fatal("noop_worker did not start")
		}
		untilDone(queue)
		elapsed := time.Since(start)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		return float64(jobs) / elapsed.Seconds()
	}
	golang := func(queue string) float64 {
		enqueue(queue)
		cfg := Config{URL: coordURL, Queues: []string{queue}, Concurrency: concurrency, LeaseTTL: 10 * time.Second}
		w, err := NewWorker(cfg)
		if err != nil {
			t.Fatal(err)
		}
		w.Handle("noop", func(ctx context.Context, job *Job) (any, error) { return nil, nil })
		start := time.Now()
		rw := startWorker(t, w)
		untilDone(queue)
		elapsed := time.Since(start)
		if err := rw.stop(); err != nil {
			t.Fatal(err)
		}
		return float64(jobs) / elapsed.Seconds()
	}

	r1 := rust(fmt.Sprintf("bench-rust-1-%d", time.Now().UnixNano()))
	g1 := golang(fmt.Sprintf("bench-go-1-%d", time.Now().UnixNano()))
	g2 := golang(fmt.Sprintf("bench-go-2-%d", time.Now().UnixNano()))
	r2 := rust(fmt.Sprintf("bench-rust-2-%d", time.Now().UnixNano()))
	rustRate, goRate := (r1+r2)/2, (g1+g2)/2
	t.Logf("no-op jobs/s with %d jobs, concurrency %d: Rust %.0f, %.0f; Go %.0f, %.0f", jobs, concurrency, r1, r2, g1, g2)
	t.Logf("Go / Rust = %.2f (mean Go %.0f jobs/s, mean Rust %.0f jobs/s)", goRate/rustRate, goRate, rustRate)
}
