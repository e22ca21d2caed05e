package leasehold

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
)

// One worker with Tenants serves a pool shared by two tenants: each handler sees whose job it
// runs, and each outcome lands in its job's own tenant.
func TestAPoolWorkerServesEachTenantsJobs(t *testing.T) {
	queue := queueFor(t)
	tenants := []string{"pool-a-" + queue, "pool-b-" + queue}
	ctx := ctxFor(t)
	type enqueued struct {
		tenant string
		client *Client
		id     string
	}
	var jobs []enqueued
	for _, tenant := range tenants {
		client, err := NewClient(ClientConfig{URL: coordURL, Tenant: tenant})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.Close() })
		for n := 0; n < 3; n++ {
			job, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "work", Payload: map[string]int{"n": n}})
			if err != nil {
				t.Fatal(err)
			}
			jobs = append(jobs, enqueued{tenant, client, job.ID})
		}
	}
	cfg := testConfig(t, queue)
	cfg.Tenants = tenants
	cfg.TenantWeights = map[string]int{tenants[0]: 2}
	w := newWorker(t, cfg)
	var mu sync.Mutex
	seen := map[string]int{}
	w.Handle("work", func(ctx context.Context, job *Job) (any, error) {
		mu.Lock()
		seen[job.Tenant()]++
		mu.Unlock()
		return job.Tenant(), nil
	})
	startWorker(t, w)
	for _, j := range jobs {
		done, err := j.client.Wait(ctx, j.id)
		if err != nil {
			t.Fatal(err)
		}
		var ran string
		if err := json.Unmarshal(done.Result, &ran); err != nil {
			t.Fatal(err)
		}
		if done.State != StateSucceeded || ran != j.tenant {
			t.Fatalf("job %s of %s: state %s, ran for %q", j.id, j.tenant, done.State, ran)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if seen[tenants[0]] != 3 || seen[tenants[1]] != 3 {
		t.Fatalf("handled per tenant: %v", seen)
	}
}
