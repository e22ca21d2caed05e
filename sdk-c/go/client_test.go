package leasehold

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestClientEnqueueGetCancelRetryWait(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)

	first, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "k", Payload: map[string]int{"x": 1}, IdempotencyKey: "once-" + queue, Priority: 5})
	if err != nil {
		t.Fatal(err)
	}
	if first.Replayed || first.State != StateQueued || first.Priority != 5 || first.IdempotencyKey != "once-"+queue {
		t.Fatalf("%+v", first)
	}
	again, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "k", Payload: map[string]int{"x": 1}, IdempotencyKey: "once-" + queue})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Replayed || again.ID != first.ID {
		t.Fatalf("second enqueue with the same key: replayed %v, id %s vs %s", again.Replayed, again.ID, first.ID)
	}

	payload := json.RawMessage(`{"b":[1,2],"a":"x"}`)
	det, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "k", Payload: payload, DeterministicKey: true})
	if err != nil {
		t.Fatal(err)
	}
	key, err := IdempotencyKey(queue, "k", payload)
	if err != nil {
		t.Fatal(err)
	}
	if det.IdempotencyKey != key {
		t.Fatalf("deterministic key %q, computed %q", det.IdempotencyKey, key)
	}

	got, err := client.Get(ctx, first.ID)
	if err != nil || got.ID != first.ID || string(got.Payload) != `{"x":1}` {
		t.Fatalf("get: %+v %v", got, err)
	}

	// Nobody works this queue: a short deadline ends the wait with the context's error.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = client.Wait(short, first.ID)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrTimeout) {
		t.Fatalf("wait on a queued job: %v", err)
	}
	// An explicit cancel of the ctx, too.
	cancelled, cancel := context.WithCancel(ctx)
	go func() {
		time.Sleep(100 * time.Millisecond)
		cancel()
	}()
	if _, err := client.Wait(cancelled, first.ID); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait with a cancelled ctx: %v", err)
	}

	c, err := client.Cancel(ctx, first.ID, "not needed")
	if err != nil || c.State != StateCancelled || c.CancelReason != "not needed" {
		t.Fatalf("cancel: %+v %v", c, err)
	}
	done, err := client.Wait(ctx, first.ID)
	if err != nil || done.State != StateCancelled {
		t.Fatalf("wait: %+v %v", done, err)
	}
	r, err := client.Retry(ctx, first.ID)
	if err != nil || r.State != StateQueued {
		t.Fatalf("retry: %+v %v", r, err)
	}

	queues, err := client.Queues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, q := range queues {
		if q.Name == queue {
			found = q.Depth.Queued == 2
		}
	}
	if !found {
		t.Fatalf("queue %s with 2 queued jobs not in %+v", queue, queues)
	}
}

func TestClientErrors(t *testing.T) {
	client := newClient(t)
	ctx := ctxFor(t)
	_, err := client.Get(ctx, "0191b3a4-0000-7000-8000-000000000000")
	var e *Error
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &e) || e.HTTPStatus != 404 || e.APICode != "not_found" {
		t.Fatalf("unknown job: %v (%+v)", err, e)
	}
	if _, err := client.Get(ctx, "not-a-uuid"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad id: %v", err)
	}
	if _, err := client.Enqueue(ctx, JobSpec{Queue: "bad queue", Kind: "k"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad queue: %v", err)
	}
	if _, err := NewClient(ClientConfig{URL: "ftp://nope"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad url: %v", err)
	}

	unreachable, err := NewClient(ClientConfig{
		URL:         "http://127.0.0.1:1",
		RetryPolicy: &RetryPolicy{Initial: 10 * time.Millisecond, Multiplier: 2, MaxDelay: 50 * time.Millisecond, MaxAttempts: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = unreachable.Get(ctx, "0191b3a4-0000-7000-8000-000000000000")
	if !errors.Is(err, ErrUnreachable) || !errors.As(err, &e) || e.Code != CodeUnreachable {
		t.Fatalf("unreachable: %v", err)
	}
	// Close is idempotent; calls after it fail with ErrClosed.
	if err := unreachable.Close(); err != nil {
		t.Fatal(err)
	}
	if err := unreachable.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := unreachable.Get(ctx, "0191b3a4-0000-7000-8000-000000000000"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

// A job spec read from JSON refuses a misspelt field by name (the coordinator and the C ABI
// refuse it too); the well-spelt spec enqueues with the field applied.
func TestJobSpecFromJSONRefusesUnknownFields(t *testing.T) {
	var spec JobSpec
	err := json.Unmarshal([]byte(`{"queue":"q","kind":"k","max_atempts":5}`), &spec)
	if err == nil || !strings.Contains(err.Error(), `unknown field "max_atempts"`) {
		t.Fatalf("misspelt field: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"queue":"go-strict","kind":"k","max_attempts":5}`), &spec); err != nil {
		t.Fatal(err)
	}
	client := newClient(t)
	job, err := client.Enqueue(ctxFor(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	if job.MaxAttempts != 5 || job.Queue != "go-strict" {
		t.Fatalf("enqueued %+v", job)
	}
}

// A key reused for other work is the coordinator's 409 idempotency_conflict, not a replay of
// the old job.
func TestAKeyReusedForOtherWorkIsRefused(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)
	if _, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "k", Payload: 1, IdempotencyKey: "reused"}); err != nil {
		t.Fatal(err)
	}
	_, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "k", Payload: 2, IdempotencyKey: "reused"})
	var e *Error
	if !errors.Is(err, ErrCoordinator) || !errors.As(err, &e) || e.HTTPStatus != 409 || e.APICode != "idempotency_conflict" {
		t.Fatalf("reused key: %v (%+v)", err, e)
	}
	if !strings.Contains(e.Message, "different payload") {
		t.Fatalf("message: %s", e.Message)
	}
}

// Wait at ctx's deadline says how far the job got (here: nobody serves its queue), and an
// explicit cancellation still stops it with ctx.Err().
func TestWaitTimeoutNamesTheJobsState(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	job, err := client.Enqueue(ctxFor(t), JobSpec{Queue: queue, Kind: "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = client.Wait(ctx, job.ID)
	var e *Error
	want := fmt.Sprintf("job %s still queued after ", job.ID)
	if !errors.Is(err, ErrTimeout) || !errors.As(err, &e) || e.Code != CodeTimeout ||
		!strings.Contains(e.Message, want) || !strings.Contains(e.Message, fmt.Sprintf("(attempt 0 of %d)", job.MaxAttempts)) {
		t.Fatalf("wait past the deadline: %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancelled := make(chan error, 1)
	go func() {
		_, err := client.Wait(ctx, job.ID)
		cancelled <- err
	}()
	cancel()
	if err := recv(t, cancelled, "the cancelled wait"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
}
