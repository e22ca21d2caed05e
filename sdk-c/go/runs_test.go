package leasehold

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// Runs (DAGs) worked by the Go SDK end to end: a chain ends succeeded; a first step failing
// fatally ends the run failed with its descendants cancelled (upstream_failed). The C ABI has no
// run submission yet, so the run is submitted over plain HTTP.

type runView struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Jobs   []struct {
		Key   string `json:"key"`
		JobID string `json:"job_id"`
		State string `json:"state"`
	} `json:"jobs"`
}

func runHTTP(t *testing.T, method, path string, body any) runView {
	t.Helper()
	var buf bytes.Buffer
	if body != nil {
		if err := json.NewEncoder(&buf).Encode(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, coordURL+path, &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %s", method, path, resp.Status)
	}
	var run runView
	if err := json.NewDecoder(resp.Body).Decode(&run); err != nil {
		t.Fatal(err)
	}
	return run
}

func workRun(t *testing.T, firstKind string) (runView, *Client) {
	queue := queueFor(t)
	client := newClient(t)
	jobs := []map[string]any{
		{"key": "extract", "kind": firstKind, "queue": queue},
		{"key": "transform", "kind": "step", "queue": queue, "depends_on": []string{"extract"}},
		{"key": "load", "kind": "step", "queue": queue, "depends_on": []string{"transform"}},
	}
	run := runHTTP(t, "POST", "/v1/runs", map[string]any{"name": "go-" + firstKind, "jobs": jobs})
	w := newWorker(t, testConfig(t, queue))
	w.Handle("step", func(ctx context.Context, job *Job) (any, error) { return map[string]bool{"ok": true}, nil })
	w.Handle("broken", func(ctx context.Context, job *Job) (any, error) {
		return nil, Fatal(errors.New("the source is gone"))
	})
	rw := startWorker(t, w)
	deadline := time.Now().Add(patience)
	for {
		run = runHTTP(t, "GET", "/v1/runs/"+run.ID, nil)
		if run.Status == "succeeded" || run.Status == "failed" || run.Status == "cancelled" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run still %s after %s", run.Status, patience)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := rw.stop(); err != nil {
		t.Fatal(err)
	}
	return run, client
}

func statesOf(run runView) string {
	by := map[string]string{}
	for _, j := range run.Jobs {
		by[j.Key] = j.State
	}
	return fmt.Sprintf("%s %s %s", by["extract"], by["transform"], by["load"])
}

func TestARunChainSucceeds(t *testing.T) {
	run, _ := workRun(t, "step")
	if run.Status != "succeeded" || statesOf(run) != "succeeded succeeded succeeded" {
		t.Fatalf("run %s: %s", run.Status, statesOf(run))
	}
}

func TestAFatalFirstStepCancelsItsDescendants(t *testing.T) {
	run, client := workRun(t, "broken")
	if run.Status != "failed" || statesOf(run) != "dead cancelled cancelled" {
		t.Fatalf("run %s: %s", run.Status, statesOf(run))
	}
	for _, j := range run.Jobs {
		if j.Key == "extract" {
			continue
		}
		job, err := client.Get(ctxFor(t), j.JobID)
		if err != nil {
			t.Fatal(err)
		}
		if job.CancelReason != "upstream_failed" {
			t.Fatalf("%s: cancel reason %q", j.Key, job.CancelReason)
		}
	}
}
