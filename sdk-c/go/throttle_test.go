package leasehold

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// limitCall sends one /v1/limits request for tenant and decodes the answer.
func limitCall(t *testing.T, tenant, method, key string, body any) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	if body != nil {
		if err := json.NewEncoder(&buf).Encode(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, fmt.Sprintf("%s/v1/limits/%s", coordURL, key), &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Leasehold-Tenant", tenant)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s /v1/limits/%s: %d %v", method, key, resp.StatusCode, out)
	}
	return out
}

// A handler returning Throttled fails its attempt with class "throttled", runs again after the
// delay, and halves the effective rate of the adaptive limit its job falls under.
func TestThrottledSlowsItsAdaptiveLimitDown(t *testing.T) {
	queue := queueFor(t)
	// A tenant of its own: the limit gates this tenant's claims only.
	tenant := "go-" + queue
	limitCall(t, tenant, http.MethodPut, "host:*",
		map[string]any{"rate": 40, "adaptive": true, "reason": "vendor quota", "ticket": "T-1"})
	client, err := NewClient(ClientConfig{URL: coordURL, Tenant: tenant})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	ctx := ctxFor(t)
	job, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "call", LimitKeys: []string{"host:api.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, queue)
	cfg.Tenant = tenant
	w := newWorker(t, cfg)
	w.Handle("call", func(ctx context.Context, job *Job) (any, error) {
		if job.Attempt() == 1 {
			return nil, Throttled(300*time.Millisecond, errors.New("429 from api.example.com"))
		}
		return job.Attempt(), nil
	})
	startWorker(t, w)
	done, err := client.Wait(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != StateSucceeded || done.Attempt != 2 {
		t.Fatalf("state %s attempt %d", done.State, done.Attempt)
	}
	limit := limitCall(t, tenant, http.MethodGet, "host:*", nil)
	buckets, _ := limit["buckets"].([]any)
	if len(buckets) != 1 {
		t.Fatalf("buckets: %v", limit)
	}
	bucket, _ := buckets[0].(map[string]any)
	rate, _ := bucket["effective_rate"].(float64)
	// Halved by the throttle, then regaining 2% of 40/s per second: about 20/s.
	if bucket["bucket"] != "host:api.example.com" || rate < 20 || rate >= 24 {
		t.Fatalf("bucket %v", bucket)
	}
}

// A worker with Adaptive set runs fewer jobs at once after its jobs were throttled: eight
// attempts throttled together halve its limit of 8, so their eight retries, due together, run
// at most four at a time.
func TestAnAdaptiveWorkerRunsFewerJobsAtOnceAfterThrottles(t *testing.T) {
	queue := queueFor(t)
	client, err := NewClient(ClientConfig{URL: coordURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	ctx := ctxFor(t)
	specs := make([]JobSpec, 8)
	for i := range specs {
		specs[i] = JobSpec{Queue: queue, Kind: "call", Payload: map[string]int{"n": i}}
	}
	jobs, err := client.EnqueueMany(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, queue)
	cfg.LeaseTTL = 10 * time.Second
	cfg.Adaptive = &AdaptiveConcurrency{Min: 1}
	w := newWorker(t, cfg)
	var mu sync.Mutex
	now, most := 0, 0
	w.Handle("call", func(ctx context.Context, job *Job) (any, error) {
		if job.Attempt() == 1 {
			return nil, Throttled(300*time.Millisecond, errors.New("429"))
		}
		mu.Lock()
		now++
		most = max(most, now)
		mu.Unlock()
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		now--
		mu.Unlock()
		return job.Attempt(), nil
	})
	startWorker(t, w)
	for _, j := range jobs {
		done, err := client.Wait(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if done.State != StateSucceeded || done.Attempt != 2 {
			t.Fatalf("job %s: state %s attempt %d", j.ID, done.State, done.Attempt)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if most < 1 || most > 4 {
		t.Fatalf("at most %d retries ran at once; the halved limit allows 4", most)
	}
}
