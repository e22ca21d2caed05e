package leasehold

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// The Client's operator calls against the package's coordinator (shared by every test, so each
// filter names this test's own queue, correlation id or run name).

func ids(jobs []JobRecord) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

func newestFirst(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	slices.Reverse(out)
	return out
}

func TestListJobsByRunCorrelationIDAndTime(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)
	corr := "req-" + queue
	a, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "k", CorrelationID: corr})
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	run := runHTTP(t, "POST", "/v1/runs", map[string]any{"jobs": []map[string]any{
		{"key": "fetch", "kind": "k", "queue": queue},
		{"key": "parse", "kind": "k", "queue": queue, "depends_on": []string{"fetch"}},
	}})
	runJobs := []string{run.Jobs[0].JobID, run.Jobs[1].JobID}

	page, err := client.List(ctx, JobQuery{CorrelationID: corr})
	if err != nil || !slices.Equal(ids(page.Jobs), []string{a.ID}) {
		t.Fatalf("by correlation id: %v %v", ids(page.Jobs), err)
	}
	page, err = client.List(ctx, JobQuery{RunID: run.ID})
	if err != nil || !slices.Equal(ids(page.Jobs), newestFirst(runJobs)) {
		t.Fatalf("by run: %v %v", ids(page.Jobs), err)
	}
	page, err = client.List(ctx, JobQuery{RunID: run.ID, State: StateBlocked})
	if err != nil || len(page.Jobs) != 1 || page.Jobs[0].State != StateBlocked {
		t.Fatalf("a run's blocked job: %+v %v", page.Jobs, err)
	}
	for _, since := range []string{"15m", Ago(15 * time.Minute), At(b.CreatedAt.Add(-time.Hour))} {
		page, err = client.List(ctx, JobQuery{Queue: queue, Since: since})
		if err != nil || len(page.Jobs) != 4 {
			t.Fatalf("since %s: %d jobs, %v", since, len(page.Jobs), err)
		}
	}
	page, err = client.List(ctx, JobQuery{Queue: queue, Until: "2020-01-01T00:00:00Z"})
	if err != nil || len(page.Jobs) != 0 {
		t.Fatalf("until 2020: %v %v", ids(page.Jobs), err)
	}
	first, err := client.List(ctx, JobQuery{Queue: queue, Limit: 3})
	if err != nil || len(first.Jobs) != 3 || first.NextCursor == "" {
		t.Fatalf("first page: %d jobs, cursor %q, %v", len(first.Jobs), first.NextCursor, err)
	}
	rest, err := client.List(ctx, JobQuery{Queue: queue, Limit: 3, Cursor: first.NextCursor})
	if err != nil || len(rest.Jobs) != 1 || rest.NextCursor != "" {
		t.Fatalf("second page: %d jobs, cursor %q, %v", len(rest.Jobs), rest.NextCursor, err)
	}
	all, err := client.List(ctx, JobQuery{})
	if err != nil || len(all.Jobs) == 0 {
		t.Fatalf("no filter: %d jobs, %v", len(all.Jobs), err)
	}

	var e *Error
	_, err = client.List(ctx, JobQuery{Since: "yesterday"})
	if !errors.As(err, &e) || e.HTTPStatus != 422 || !strings.Contains(e.Message, "since") {
		t.Fatalf("a malformed since: %v", err)
	}
	if _, err := client.List(ctx, JobQuery{RunID: "nope"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a malformed run id: %v", err)
	}
	if _, err := client.List(ctx, JobQuery{State: "sleeping"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("an unknown state: %v", err)
	}
}

func TestListRuns(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)
	name := "nightly-" + queue
	first := runHTTP(t, "POST", "/v1/runs", map[string]any{"name": name, "project": "etl", "correlation_id": "c-" + queue,
		"jobs": []map[string]any{
			{"key": "a", "kind": "k", "queue": queue},
			{"key": "b", "kind": "k", "queue": queue, "depends_on": []string{"a"}},
		}})
	second := runHTTP(t, "POST", "/v1/runs", map[string]any{"name": name,
		"jobs": []map[string]any{{"key": "a", "kind": "k", "queue": queue}}})
	runHTTP(t, "POST", "/v1/runs/"+second.ID+"/cancel", nil)

	page, err := client.ListRuns(ctx, RunQuery{Name: name})
	if err != nil || len(page.Runs) != 2 || page.Runs[0].ID != second.ID || page.NextCursor != "" {
		t.Fatalf("by name: %+v %v", page, err)
	}
	s := page.Runs[1]
	if s.ID != first.ID || s.Status != RunPending || s.Project != "etl" || s.CorrelationID != "c-"+queue ||
		s.Jobs[StateQueued] != 1 || s.Jobs[StateBlocked] != 1 || s.CreatedAt.IsZero() || s.CancelledAt != nil {
		t.Fatalf("summary: %+v", s)
	}
	if c := page.Runs[0]; c.Status != RunCancelled || c.CancelledAt == nil {
		t.Fatalf("cancelled run: %+v", c)
	}
	page, err = client.ListRuns(ctx, RunQuery{Name: name, Status: RunCancelled, Since: "1h"})
	if err != nil || len(page.Runs) != 1 || page.Runs[0].ID != second.ID {
		t.Fatalf("cancelled by name: %+v %v", page, err)
	}
	page, err = client.ListRuns(ctx, RunQuery{Name: name, Limit: 1})
	if err != nil || len(page.Runs) != 1 || page.NextCursor == "" {
		t.Fatalf("a page of one: %+v %v", page, err)
	}
	page, err = client.ListRuns(ctx, RunQuery{Name: name, Limit: 1, Cursor: page.NextCursor})
	if err != nil || len(page.Runs) != 1 || page.Runs[0].ID != first.ID {
		t.Fatalf("the next page: %+v %v", page, err)
	}
	if _, err := client.ListRuns(ctx, RunQuery{Status: "done"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("an unknown status: %v", err)
	}
}

func TestCancelAndReplayByFilter(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)
	corr := "incident-" + queue
	specs := []JobSpec{}
	for range 3 {
		specs = append(specs, JobSpec{Queue: queue, Kind: "k", CorrelationID: corr})
	}
	jobs, err := client.EnqueueMany(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	bystander, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	three := newestFirst(ids(jobs))

	dry, err := client.CancelJobs(ctx, CancellationRequest{CorrelationID: corr, DryRun: true, Reason: "bad deploy", Ticket: "OPS-1"})
	if err != nil || !dry.DryRun || dry.Matched != 3 || dry.Cancelled != 0 || dry.AuditEventID != nil || !slices.Equal(dry.JobIDs, three) {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	if j, _ := client.Get(ctx, three[0]); j.State != StateQueued {
		t.Fatalf("a dry run changed %s to %s", j.ID, j.State)
	}
	done, err := client.CancelJobs(ctx, CancellationRequest{CorrelationID: corr, Reason: "bad deploy", Ticket: "OPS-1"})
	if err != nil || done.DryRun || done.Matched != 3 || done.Cancelled != 3 || done.AuditEventID == nil {
		t.Fatalf("cancel: %+v %v", done, err)
	}
	for _, id := range three {
		if j, _ := client.Get(ctx, id); j.State != StateCancelled || j.CancelReason == "" {
			t.Fatalf("%s: %s (%q)", id, j.State, j.CancelReason)
		}
	}
	if j, _ := client.Get(ctx, bystander.ID); j.State != StateQueued {
		t.Fatalf("the bystander: %s", j.State)
	}

	replay, err := client.ReplayJobs(ctx, ReplayRequest{Queue: queue, State: StateCancelled, Reason: "deploy fixed", Ticket: "OPS-1"})
	if err != nil || replay.Matched != 3 || replay.Replayed != 3 || !slices.Equal(replay.JobIDs, three) || replay.AuditEventID == nil {
		t.Fatalf("replay: %+v %v", replay, err)
	}
	page, err := client.List(ctx, JobQuery{Queue: queue, State: StateQueued})
	if err != nil || len(page.Jobs) != 4 {
		t.Fatalf("queued after the replay: %d, %v", len(page.Jobs), err)
	}

	// The justification is required: refused before anything is sent, naming the field.
	_, err = client.ReplayJobs(ctx, ReplayRequest{Queue: queue, Ticket: "OPS-1"})
	var e *Error
	if !errors.Is(err, ErrInvalidArgument) || !errors.As(err, &e) || !strings.Contains(e.Message, "reason is required") {
		t.Fatalf("a replay without a reason: %v", err)
	}
	_, err = client.CancelJobs(ctx, CancellationRequest{Queue: queue, Reason: "why", Ticket: "  "})
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "ticket is required") {
		t.Fatalf("a cancellation without a ticket: %v", err)
	}
	if _, err := client.CancelJobs(ctx, CancellationRequest{Queue: "no spaces", Reason: "r", Ticket: "t"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a bad queue: %v", err)
	}
	_, err = client.ReplayJobs(ctx, ReplayRequest{Queue: queue, State: StateQueued, Reason: "r", Ticket: "t"})
	if !errors.As(err, &e) || e.HTTPStatus != 422 {
		t.Fatalf("a replay of queued jobs: %v", err)
	}
	if page, _ := client.List(ctx, JobQuery{Queue: queue, State: StateQueued}); len(page.Jobs) != 4 {
		t.Fatalf("refusals changed jobs: %d queued", len(page.Jobs))
	}
}

func TestWorkersStatsFailuresAndSLO(t *testing.T) {
	queue := queueFor(t)
	client := newClient(t)
	ctx := ctxFor(t)
	cfg := testConfig(t, queue)
	cfg.WorkerID = "ops-" + queue
	w := newWorker(t, cfg)
	w.Handle("boom", func(ctx context.Context, job *Job) (any, error) {
		return nil, Fatal(errors.New("bad input"))
	})
	job, err := client.Enqueue(ctx, JobSpec{Queue: queue, Kind: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	rw := startWorker(t, w)
	if ended, err := client.Wait(ctx, job.ID); err != nil || ended.State != StateDead {
		t.Fatalf("wait: %+v %v", ended, err)
	}
	for _, since := range []string{"", "10m", Ago(time.Hour)} {
		workers, err := client.Workers(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(workers, func(w WorkerInfo) bool { return w.WorkerID == cfg.WorkerID })
		if i < 0 {
			t.Fatalf("since %q: %s not in %+v", since, cfg.WorkerID, workers)
		}
		me := workers[i]
		if !slices.Equal(me.Queues, []string{queue}) || !strings.Contains(me.Version, "go-tests/1") || me.LastSeenAt.IsZero() {
			t.Fatalf("worker: %+v", me)
		}
	}
	if err := rw.stop(); err != nil {
		t.Fatal(err)
	}

	stats, err := client.Stats(ctx, "15m", queue)
	if err != nil || stats.BucketSecs != 60 {
		t.Fatalf("stats: %+v %v", stats, err)
	}
	var leased, dead uint64
	for _, p := range stats.Points {
		if p.Queue != queue {
			t.Fatalf("a point of another queue: %+v", p)
		}
		leased += p.Leased
		dead += p.Dead
	}
	if leased != 1 || dead != 1 {
		t.Fatalf("leased %d, dead %d: %+v", leased, dead, stats.Points)
	}
	failures, err := client.Failures(ctx, "", queue)
	if err != nil || len(failures.Classes) != 1 || failures.Classes[0].Count != 1 || failures.Classes[0].Queue != queue {
		t.Fatalf("failures: %+v %v", failures, err)
	}
	report, err := client.SLO(ctx, "30m")
	if err != nil || report.WindowSecs != 1800 {
		t.Fatalf("slo: %+v %v", report, err)
	}
	i := slices.IndexFunc(report.Queues, func(q QueueSLO) bool { return q.Queue == queue })
	if i < 0 {
		t.Fatalf("%s not in the SLO report %+v", queue, report)
	}
	if s := report.Queues[i].Success; s.Good != 0 || s.Total != 1 || s.BurnRate == nil || report.Queues[i].Configured {
		t.Fatalf("success measure: %+v", report.Queues[i])
	}
	if r, err := client.SLO(ctx, ""); err != nil || r.WindowSecs != 3600 {
		t.Fatalf("default window: %d %v", r.WindowSecs, err)
	}
	var e *Error
	if _, err := client.SLO(ctx, "10s"); !errors.As(err, &e) || e.HTTPStatus != 422 {
		t.Fatalf("a 10s window: %v", err)
	}
	if _, err := client.Stats(ctx, "", "no spaces"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a bad queue: %v", err)
	}

	dry, err := client.ReplayJobs(ctx, ReplayRequest{Queue: queue, Kind: "boom", DryRun: true, Reason: "fixed", Ticket: "OPS-2"})
	if err != nil || dry.Matched != 1 || dry.Replayed != 0 || !slices.Equal(dry.JobIDs, []string{job.ID}) {
		t.Fatalf("dry replay of the dead job: %+v %v", dry, err)
	}
}
