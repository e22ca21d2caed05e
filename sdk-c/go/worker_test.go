package leasehold

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestHandlersCompleteJobs(t *testing.T) {
	for _, transport := range []Transport{TransportWebSocket, TransportHTTP} {
		t.Run(string(transport), func(t *testing.T) {
			queue := queueFor(t)
			client := newClient(t)
			ctx := ctxFor(t)
			specs := make([]JobSpec, 20)
			for i := range specs {
				specs[i] = JobSpec{Queue: queue, Kind: "double", Payload: map[string]int{"n": i}}
			}
			jobs, err := client.EnqueueMany(ctx, specs)
			if err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(t, queue)
			cfg.Transport = transport
			w := newWorker(t, cfg)
			w.Handle("double", func(ctx context.Context, job *Job) (any, error) {
				var in struct{ N int }
				if err := job.Decode(&in); err != nil {
					return nil, err
				}
				return map[string]any{"double": 2 * in.N, "key": job.IdempotencyKey(), "attempt": job.Attempt()}, nil
			})
			rw := startWorker(t, w)
			for i, j := range jobs {
				done, err := client.Wait(ctx, j.ID)
				if err != nil {
					t.Fatal(err)
				}
				if done.State != StateSucceeded {
					t.Fatalf("job %d: %s", i, done.State)
				}
				var res struct {
					Double  int
					Key     string
					Attempt int
				}
				if err := json.Unmarshal(done.Result, &res); err != nil {
					t.Fatal(err)
				}
				if res.Double != 2*i || res.Key != j.IdempotencyKey || res.Attempt != 1 {
					t.Fatalf("job %d: result %s, key %q", i, done.Result, j.IdempotencyKey)
				}
				if !strings.Contains(done.WorkerVersion, "leasehold-go/"+Version) || !strings.HasSuffix(done.WorkerVersion, " go-tests/1") {
					t.Fatalf("worker version %q", done.WorkerVersion)
				}
			}
			if err := rw.stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

type flakyError struct{}

func (flakyError) Error() string      { return "flaky dependency" }
func (flakyError) ErrorClass() string { return "Flaky" }

func TestRetryAfterRunsAgainAfterTheDelay(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)
	job, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "flaky", Payload: nil})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var starts []time.Time
	w := newWorker(t, testConfig(t, queue))
	w.Handle("flaky", func(ctx context.Context, job *Job) (any, error) {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		if job.Attempt() == 1 {
			return nil, RetryAfter(400*time.Millisecond, flakyError{})
		}
		return "ok", nil
	})
	startWorker(t, w)
	done, err := client.Wait(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != StateSucceeded || done.Attempt != 2 || string(done.Result) != `"ok"` {
		t.Fatalf("state %s attempt %d result %s", done.State, done.Attempt, done.Result)
	}
	if e := done.LastError; e == nil || e.Class != "Flaky" || e.Message != "flaky dependency" || !e.Retryable {
		t.Fatalf("last error %+v", done.LastError)
	}
	mu.Lock()
	defer mu.Unlock()
	if gap := starts[1].Sub(starts[0]); gap < 350*time.Millisecond {
		t.Fatalf("second attempt came %v after the first; asked for 400ms", gap)
	}
}

func TestPlainErrorsRetryWithThePolicyAndPanicsToo(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)
	plain, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "plain", Backoff: &Backoff{InitialMS: 50, Multiplier: 1, MaxDelayMS: 50}})
	if err != nil {
		t.Fatal(err)
	}
	panicky, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "panicky", Backoff: &Backoff{InitialMS: 50, Multiplier: 1, MaxDelayMS: 50}})
	if err != nil {
		t.Fatal(err)
	}
	w := newWorker(t, testConfig(t, queue))
	w.Handle("plain", func(ctx context.Context, job *Job) (any, error) {
		if job.Attempt() < 3 {
			return nil, fmt.Errorf("attempt %d failed", job.Attempt())
		}
		return job.Attempt(), nil
	})
	w.Handle("panicky", func(ctx context.Context, job *Job) (any, error) {
		if job.Attempt() == 1 {
			panic("kaboom on attempt 1")
		}
		return "recovered", nil
	})
	startWorker(t, w)
	done, err := client.Wait(ctx, plain.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != StateSucceeded || done.Attempt != 3 || done.LastError == nil || done.LastError.Class != "error" ||
		done.LastError.Message != "attempt 2 failed" {
		t.Fatalf("%s attempt %d last error %+v", done.State, done.Attempt, done.LastError)
	}
	done, err = client.Wait(ctx, panicky.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != StateSucceeded || done.Attempt != 2 || done.LastError == nil || done.LastError.Class != "panic" ||
		done.LastError.Message != "kaboom on attempt 1" {
		t.Fatalf("%s attempt %d last error %+v", done.State, done.Attempt, done.LastError)
	}
}

func TestFatalErrorsMakeTheJobDead(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)
	w := newWorker(t, testConfig(t, queue))
	w.Handle("fatal", func(ctx context.Context, job *Job) (any, error) {
		return nil, Fatal(errors.New("bad input"))
	})
	w.Handle("classed", func(ctx context.Context, job *Job) (any, error) {
		return nil, &FatalError{Class: "ValidationError", Err: errors.New("no")}
	})
	w.Handle("typed", func(ctx context.Context, job *Job) (any, error) {
		var in struct{ N int }
		return nil, job.Decode(&in) // the payload is a string: a fatal bad_payload
	})
	w.Handle("unmarshalable", func(ctx context.Context, job *Job) (any, error) {
		return func() {}, nil
	})
	startWorker(t, w)
	cases := []struct {
		kind, class, message string
		payload              any
	}{
		{"fatal", "fatal", "bad input", nil},
		{"classed", "ValidationError", "no", nil},
		{"typed", "bad_payload", "payload does not match the expected shape", "text"},
		{"unmarshalable", "bad_result", "cannot marshal the handler's result", nil},
		{"nobody-handles-this", "unknown_kind", `no handler registered for kind "nobody-handles-this"`, nil},
	}
	for _, c := range cases {
		job, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: c.kind, Payload: c.payload})
		if err != nil {
			t.Fatal(err)
		}
		done, err := client.Wait(ctx, job.ID)
		if err != nil {
			t.Fatal(err)
		}
		if done.State != StateDead || done.Attempt != 1 || done.LastError == nil || done.LastError.Retryable ||
			done.LastError.Class != c.class || !strings.Contains(done.LastError.Message, c.message) {
			t.Fatalf("%s: %s attempt %d last error %+v", c.kind, done.State, done.Attempt, done.LastError)
		}
	}
}

func TestCancelRequestCancelsTheHandlerContext(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)
	started := make(chan string, 1)
	causes := make(chan error, 1)
	w := newWorker(t, testConfig(t, queue))
	w.Handle("slow", func(ctx context.Context, job *Job) (any, error) {
		started <- job.ID()
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	startWorker(t, w)
	job, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	if id := recv(t, started, "the handler to start"); id != job.ID {
		t.Fatalf("started %s, enqueued %s", id, job.ID)
	}
	if _, err := client.Cancel(ctx, job.ID, "changed my mind"); err != nil {
		t.Fatal(err)
	}
	if cause := recv(t, causes, "the handler's ctx to be cancelled"); !errors.Is(cause, ErrCancelRequested) {
		t.Fatalf("cause %v", cause)
	}
	done, err := client.Wait(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != StateCancelled {
		t.Fatalf("state %s", done.State)
	}
}

func TestLeaseLossCancelsTheHandlerContext(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)
	type lease struct {
		id    string
		token int64
	}
	leased := make(chan lease, 1)
	causes := make(chan error, 1)
	w := newWorker(t, testConfig(t, queue))
	w.Handle("doomed", func(ctx context.Context, job *Job) (any, error) {
		leased <- lease{job.ID(), job.FencingToken()}
		<-ctx.Done()
		causes <- context.Cause(ctx)
		// Too late: whatever we report is dropped.
		return "late", nil
	})
	startWorker(t, w)
	job, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "doomed"})
	if err != nil {
		t.Fatal(err)
	}
	l := recv(t, leased, "the job to be leased")
	// Someone else ends the job under our token (a zombie-fencing stand-in): the next heartbeat
	// answers "lost".
	status, body := postJSON(t, "/v1/jobs/"+l.id+"/complete", map[string]any{"fencing_token": l.token, "result": "imposter"})
	if status != 200 {
		t.Fatalf("complete behind the worker's back: %d %s", status, body)
	}
	cause := recv(t, causes, "the handler's ctx to be cancelled")
	if !errors.Is(cause, ErrLeaseLost) {
		t.Fatalf("cause %v", cause)
	}
	// The late result never replaces the imposter's.
	time.Sleep(500 * time.Millisecond)
	done, err := client.Get(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != StateSucceeded || string(done.Result) != `"imposter"` {
		t.Fatalf("%s %s", done.State, done.Result)
	}
}

func TestShutdownCancelsRunningHandlersAndReleasesTheirJobs(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)
	started := make(chan struct{}, 1)
	causes := make(chan error, 1)
	cfg := testConfig(t, queue)
	cfg.DrainTimeout = 200 * time.Millisecond
	w := newWorker(t, cfg)
	w.Handle("stubborn", func(ctx context.Context, job *Job) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	rw := startWorker(t, w)
	job, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "stubborn"})
	if err != nil {
		t.Fatal(err)
	}
	recv(t, started, "the handler to start")
	if err := rw.stop(); err != nil {
		t.Fatal(err)
	}
	if cause := recv(t, causes, "the handler's ctx to be cancelled"); !errors.Is(cause, ErrShutdown) {
		t.Fatalf("cause %v", cause)
	}
	got, err := client.Get(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Released: back in the queue, the attempt given back.
	if got.State != StateQueued || got.Attempt != 0 {
		t.Fatalf("state %s attempt %d", got.State, got.Attempt)
	}
	// Close after Run is harmless; Run cannot be called again.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Run: %v", err)
	}
}

func TestCloseStopsRun(t *testing.T) {
	queue := queueFor(t)
	w := newWorker(t, testConfig(t, queue))
	w.Handle("x", func(ctx context.Context, job *Job) (any, error) { return nil, nil })
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	time.Sleep(200 * time.Millisecond)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, done, "Run to return"); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func sha(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestArtifactDigestsMatchCryptoSHA256(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)
	blob := make([]byte, 300_000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range blob {
		blob[i] = byte(rng.Uint32())
	}
	report := []byte("hello, artifacts\n")
	dir := t.TempDir()
	path := filepath.Join(dir, "report.txt")
	if err := os.WriteFile(path, report, 0o600); err != nil {
		t.Fatal(err)
	}
	returned := make(chan []Artifact, 1)
	cfg := testConfig(t, queue)
	cfg.StagingDir = dir
	w := newWorker(t, cfg)
	w.Handle("publish", func(ctx context.Context, job *Job) (any, error) {
		a, err := job.PutArtifactBytes(ctx, "out/blob.bin", "", blob)
		if err != nil {
			return nil, err
		}
		b, err := job.PutArtifactFile(ctx, "report.txt", "text/plain", path)
		if err != nil {
			return nil, err
		}
		if _, err := job.PutArtifactBytes(ctx, "../escape", "", nil); !errors.Is(err, ErrInvalidArgument) {
			return nil, Fatal(fmt.Errorf("a bad artifact name was accepted: %v", err))
		}
		returned <- []Artifact{a, b}
		return map[string]string{"blob": a.Digest}, nil
	})
	startWorker(t, w)
	job, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "publish"})
	if err != nil {
		t.Fatal(err)
	}
	got := recv(t, returned, "the artifacts")
	want := []Artifact{
		{Name: "out/blob.bin", Digest: sha(blob), Size: uint64(len(blob)), MediaType: "application/octet-stream"},
		{Name: "report.txt", Digest: sha(report), Size: uint64(len(report)), MediaType: "text/plain"},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("artifact %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	done, err := client.Wait(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != StateSucceeded {
		t.Fatalf("state %s, last error %+v", done.State, done.LastError)
	}
	// The manifest, sorted by name, as the coordinator recorded it (after checking its digest).
	if len(done.Artifacts) != 2 || done.Artifacts[0] != want[0] || done.Artifacts[1] != want[1] {
		t.Fatalf("manifest %+v", done.Artifacts)
	}
	if Digest(blob) != sha(blob) {
		t.Fatal("Digest disagrees with crypto/sha256")
	}
	// Nothing was left behind in the staging dir.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("staging dir holds %d entries", len(entries))
	}
}

func TestCheckpointsCarryOverToTheNextAttempt(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)
	var seen atomic.Value
	w := newWorker(t, testConfig(t, queue))
	w.Handle("resumable", func(ctx context.Context, job *Job) (any, error) {
		last, err := job.LastCheckpoint()
		if err != nil {
			return nil, err
		}
		if job.Attempt() == 1 {
			if last != nil {
				return nil, Fatal(fmt.Errorf("attempt 1 saw checkpoint %s", last))
			}
			if err := job.Progress(map[string]int{"done": 5}); err != nil {
				return nil, err
			}
			if err := job.Checkpoint(map[string]int{"done": 5}); err != nil {
				return nil, err
			}
			return nil, RetryAfter(0, errors.New("crash after the checkpoint"))
		}
		seen.Store(string(last))
		return "resumed", nil
	})
	startWorker(t, w)
	job, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "resumable"})
	if err != nil {
		t.Fatal(err)
	}
	done, err := client.Wait(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != StateSucceeded || done.Attempt != 2 {
		t.Fatalf("%s attempt %d last error %+v", done.State, done.Attempt, done.LastError)
	}
	if got, _ := seen.Load().(string); got != `{"done":5}` {
		t.Fatalf("attempt 2 saw checkpoint %q", got)
	}
}

func TestRunRefusesABadConfiguration(t *testing.T) {
	if _, err := NewWorker(Config{Queues: []string{"q"}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("no URL: %v", err)
	}
	if _, err := NewWorker(Config{URL: coordURL}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("no queues: %v", err)
	}
	w := newWorker(t, Config{URL: coordURL, Queues: []string{"no spaces allowed"}})
	err := w.Run(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeInvalidArgument || !strings.Contains(e.Message, "queue name") {
		t.Fatalf("bad queue: %v", err)
	}
}

// A result over the coordinator's limit (1 MiB for a result) is refused; the SDK records a
// final result_too_large failure in its place, so the job ends dead on its first attempt
// instead of expiring and running again.
func TestAResultOverTheLimitEndsTheJobDead(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)
	w := newWorker(t, testConfig(t, queue))
	w.Handle("big", func(ctx context.Context, job *Job) (any, error) {
		return map[string]string{"blob": strings.Repeat("x", 1_100_000)}, nil
	})
	startWorker(t, w)
	job, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "big", MaxAttempts: 5})
	if err != nil {
		t.Fatal(err)
	}
	done, err := client.Wait(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != StateDead || done.Attempt != 1 || done.LastError == nil || done.LastError.Retryable ||
		done.LastError.Class != "result_too_large" || !strings.Contains(done.LastError.Message, "the limit is 1048576") {
		t.Fatalf("%s attempt %d last error %+v", done.State, done.Attempt, done.LastError)
	}
}

// PutArtifactFile on a missing file names the path.
func TestPutArtifactFileOnAMissingFileNamesThePath(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)
	path := filepath.Join(t.TempDir(), "no-such-file.bin")
	got := make(chan error, 1)
	w := newWorker(t, testConfig(t, queue))
	w.Handle("upload", func(ctx context.Context, job *Job) (any, error) {
		_, err := job.PutArtifactFile(ctx, "out.bin", "", path)
		got <- err
		return nil, Fatal(errors.New("done"))
	})
	startWorker(t, w)
	if _, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "upload"}); err != nil {
		t.Fatal(err)
	}
	err := recv(t, got, "the upload's error")
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeIO || !strings.Contains(err.Error(), path) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestATimeoutCancelsTheHandlerContext(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)
	// From a spec file too: "timeout_ms" is JobSpec.Timeout.
	var spec JobSpec
	if err := json.Unmarshal([]byte(`{"queue":"`+queue+`","kind":"slow","timeout_ms":1500,"max_attempts":1}`), &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Timeout != 1500*time.Millisecond {
		t.Fatalf("timeout %v", spec.Timeout)
	}
	causes := make(chan error, 1)
	w := newWorker(t, testConfig(t, queue))
	w.Handle("slow", func(ctx context.Context, job *Job) (any, error) {
		select {
		case <-time.After(time.Minute):
		case <-ctx.Done():
			causes <- context.Cause(ctx)
		}
		// Whatever it returns now, the attempt is reported as timed out.
		return "finished anyway", nil
	})
	startWorker(t, w)
	job, err := client.Enqueue(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if job.TimeoutMS == nil || *job.TimeoutMS != 1500 {
		t.Fatalf("the job's timeout: %v", job.TimeoutMS)
	}
	cause := recv(t, causes, "the handler's ctx to be cancelled")
	if !errors.Is(cause, ErrTimedOut) || !errors.Is(cause, ErrLeaseLost) {
		t.Fatalf("cause %v", cause)
	}
	done, err := client.Wait(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != StateDead || done.LastError == nil || done.LastError.Class != "timeout" || len(done.Result) != 0 && string(done.Result) != "null" {
		t.Fatalf("%s %+v %s", done.State, done.LastError, done.Result)
	}
	if !strings.HasPrefix(done.LastError.Message, "run time exceeded: the handler") {
		t.Fatalf("not the worker's report: %q", done.LastError.Message)
	}
}

// blockingWorker is a worker of concurrency 2 over 16 jobs of a fresh queue: the first four
// end at once (so the jobs are known to be short), the others block until release is closed or
// their ctx ends.
type blockingWorker struct {
	queue   string
	client  *Client
	ctx     context.Context
	jobs    []JobRecord
	release chan struct{}
	// most handlers seen running at once, and how many blocked so far.
	most, blocked atomic.Int64
	rw            *runningWorker
}

func startBlockingWorker(t *testing.T, tune func(*Config)) *blockingWorker {
	b := &blockingWorker{queue: queueFor(t), client: newClient(t), ctx: ctxFor(t), release: make(chan struct{})}
	specs := make([]JobSpec, 16)
	for i := range specs {
		specs[i] = JobSpec{Queue: b.queue, Kind: "tick", Payload: map[string]int{"n": i}}
	}
	var err error
	if b.jobs, err = b.client.EnqueueMany(b.ctx, specs); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, b.queue)
	cfg.Concurrency = 2
	cfg.LeaseTTL = 10 * time.Second
	tune(&cfg)
	w := newWorker(t, cfg)
	var running atomic.Int64
	w.Handle("tick", func(ctx context.Context, job *Job) (any, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for m := b.most.Load(); n > m && !b.most.CompareAndSwap(m, n); m = b.most.Load() {
		}
		var in struct{ N int }
		if err := job.Decode(&in); err != nil {
			return nil, err
		}
		if in.N >= 4 {
			b.blocked.Add(1)
			select {
			case <-b.release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return nil, nil
	})
	b.rw = startWorker(t, w)
	return b
}

// settled waits for two handlers to block, then for the quick jobs' outcomes to reach the
// coordinator and any prefetched leases the worker.
func (b *blockingWorker) settled() {
	deadline := time.Now().Add(patience)
	for b.blocked.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
}

// heldWhileBlocked reports how many of the queue's jobs the coordinator counts leased while two
// handlers block, then lets every job finish; and the most handlers seen running at once.
func heldWhileBlocked(t *testing.T, disablePrefetch bool) (leased, mostRunning int64) {
	b := startBlockingWorker(t, func(cfg *Config) { cfg.DisablePrefetch = disablePrefetch })
	b.settled()
	qs, err := b.client.Queues(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Name == b.queue {
			leased = q.Depth.Leased
		}
	}
	close(b.release)
	for _, j := range b.jobs {
		done, err := b.client.Wait(b.ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if done.State != StateSucceeded {
			t.Fatalf("job %s: %s", j.ID, done.State)
		}
	}
	if err := b.rw.stop(); err != nil {
		t.Fatal(err)
	}
	return leased, b.most.Load()
}

func TestPrefetchHoldsLeasesAheadButRunsNoMoreThanTheConcurrency(t *testing.T) {
	leased, running := heldWhileBlocked(t, false)
	if running > 2 {
		t.Fatalf("%d handlers ran at once with Concurrency 2", running)
	}
	// Three times Concurrency ahead of quick jobs (the most), of the 12 jobs left.
	if leased != 8 {
		t.Fatalf("%d leases held while 2 handlers ran, want 2 running + 6 prefetched", leased)
	}
}

func TestWithoutPrefetchOnlyTheRunningJobsAreLeased(t *testing.T) {
	leased, running := heldWhileBlocked(t, true)
	if running > 2 || leased != 2 {
		t.Fatalf("Concurrency 2 without prefetch: %d handlers at once, %d leases held", running, leased)
	}
}

// A drain while every slot is busy and leases wait prefetched behind them: the pull loop must
// not wait for a slot (no handler would give one back before the shutdown cancels it), so Run
// ends within the drain timeout and the cancel grace, and every unfinished job is released.
func TestADrainWithEverySlotBusyAndLeasesPrefetchedEndsInTime(t *testing.T) {
	b := startBlockingWorker(t, func(cfg *Config) {
		cfg.DrainTimeout = time.Second
		cfg.CancelGrace = time.Second
	})
	b.settled()
	started := time.Now()
	if err := b.rw.stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(started); took > 5*time.Second {
		t.Fatalf("Run took %v to return after its ctx was cancelled (drain timeout 1s, cancel grace 1s)", took)
	}
	for i, j := range b.jobs[4:] {
		rec, err := b.client.Get(b.ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != StateQueued || rec.Attempt != 0 {
			t.Fatalf("job %d: %s after attempt %d, want queued again with no attempt spent", i+4, rec.State, rec.Attempt)
		}
	}
}
