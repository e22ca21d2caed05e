package leasehold

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The Go worker's defaults are the core's: the ones proto/conformance/worker_defaults.json
// states for every skin (the Rust and Python suites check the same file).
func TestWorkerDefaultsAreTheCores(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "proto", "conformance", "worker_defaults.json"))
	if err != nil {
		t.Fatal(err)
	}
	var stated struct {
		Concurrency    int   `json:"concurrency"`
		LeaseTTLMs     int64 `json:"lease_ttl_ms"`
		PollWaitMs     int64 `json:"poll_wait_ms"`
		DrainTimeoutMs int64 `json:"drain_timeout_ms"`
		CancelGraceMs  int64 `json:"cancel_grace_ms"`
	}
	if err := json.Unmarshal(raw, &stated); err != nil {
		t.Fatal(err)
	}
	w, err := NewWorker(Config{URL: "http://127.0.0.1:9", Queues: []string{"q"}})
	if err != nil {
		t.Fatal(err)
	}
	ms := func(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
	got := w.cfg
	if got.Concurrency != stated.Concurrency || got.LeaseTTL != ms(stated.LeaseTTLMs) ||
		got.PollWait != ms(stated.PollWaitMs) || got.DrainTimeout != ms(stated.DrainTimeoutMs) ||
		got.CancelGrace != ms(stated.CancelGraceMs) {
		t.Fatalf("defaults %+v, stated %+v", got, stated)
	}
	// A setting given is kept.
	w, err = NewWorker(Config{URL: "http://127.0.0.1:9", Queues: []string{"q"}, Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	if w.cfg.Concurrency != 3 {
		t.Fatalf("concurrency %d, want 3", w.cfg.Concurrency)
	}
}
