package leasehold

// #include "leasehold.h"
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// The operator side of the Client: jobs and runs listed by filter, the workers seen, the jobs a
// filter selects cancelled or replayed (dry run first, reason and ticket required), and job
// statistics, failure classes and SLO reports.

// Ago is a time filter (JobQuery.Since and the like) of d back from now, in whole seconds
// ("900s" for 15 minutes): it stays relative however late the call is made.
func Ago(d time.Duration) string {
	return fmt.Sprintf("%ds", int64(d.Round(time.Second)/time.Second))
}

// At is a time filter (JobQuery.Since and the like) of the instant t, in RFC 3339.
func At(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// JobQuery filters Client.List. Every field is optional (zero: no filter). Since and Until are
// an RFC 3339 time or a span back from now ("90s", "15m", "24h", "7d"; see At and Ago).
type JobQuery struct {
	Queue         string `json:"queue,omitempty"`
	State         State  `json:"state,omitempty"`
	Kind          string `json:"kind,omitempty"`
	RunID         string `json:"run_id,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	Since         string `json:"since,omitempty"` // enqueued at or after
	Until         string `json:"until,omitempty"` // enqueued before
	Limit         int    `json:"limit,omitempty"` // page size (default 50, at most 500)
	Cursor        string `json:"cursor,omitempty"`
}

// JobPage is a page of jobs, newest first. Pass NextCursor as Cursor for the next page; it is
// empty on the last one.
type JobPage struct {
	Jobs       []JobRecord `json:"jobs"`
	NextCursor string      `json:"next_cursor"`
}

// RunStatus is a run's aggregate status.
type RunStatus string

// The run statuses.
const (
	RunPending   RunStatus = "pending"
	RunRunning   RunStatus = "running"
	RunSucceeded RunStatus = "succeeded"
	RunFailed    RunStatus = "failed"
	RunCancelled RunStatus = "cancelled"
)

// RunQuery filters Client.ListRuns. Every field is optional; Since and Until (submitted at or
// after, before) as for JobQuery.
type RunQuery struct {
	Status        RunStatus `json:"status,omitempty"`
	Name          string    `json:"name,omitempty"`
	Project       string    `json:"project,omitempty"`
	CorrelationID string    `json:"correlation_id,omitempty"`
	Since         string    `json:"since,omitempty"`
	Until         string    `json:"until,omitempty"`
	Limit         int       `json:"limit,omitempty"` // page size (default 50, at most 500)
	Cursor        string    `json:"cursor,omitempty"`
}

// RunSummary is one run in a listing: its record and how many of its jobs are in each state
// (states with none left out).
type RunSummary struct {
	ID            string           `json:"id"`
	Tenant        string           `json:"tenant"`
	Name          string           `json:"name"`
	Project       string           `json:"project"`
	CorrelationID string           `json:"correlation_id"`
	Status        RunStatus        `json:"status"`
	CreatedAt     time.Time        `json:"created_at"`
	UpdatedAt     time.Time        `json:"updated_at"`
	CancelledAt   *time.Time       `json:"cancelled_at"`
	Jobs          map[State]uint64 `json:"jobs"`
}

// RunPage is a page of runs, newest first; NextCursor as for JobPage.
type RunPage struct {
	Runs       []RunSummary `json:"runs"`
	NextCursor string       `json:"next_cursor"`
}

// WorkerInfo is a worker as the coordinators saw it claim and heartbeat.
type WorkerInfo struct {
	WorkerID        string     `json:"worker_id"`
	Transport       string     `json:"transport"` // "websocket" or "http"
	Queues          []string   `json:"queues"`
	Version         string     `json:"version"`
	FirstSeenAt     time.Time  `json:"first_seen_at"`
	LastSeenAt      time.Time  `json:"last_seen_at"`
	LastHeartbeatAt *time.Time `json:"last_heartbeat_at"`
	// Connected: seen within the last minute, and its session (if any) not closed since.
	Connected bool   `json:"connected"`
	Leases    uint64 `json:"leases"` // the tenant's jobs it holds now
}

// CancellationRequest selects the jobs Client.CancelJobs cancels: the filter of JobQuery (State
// is queued, blocked or leased; empty: all three), newest first up to Limit (default 1000, at
// most 10000). Reason and Ticket are required and recorded in the audit trail; DryRun only
// counts and names the jobs.
type CancellationRequest struct {
	Queue         string `json:"queue,omitempty"`
	Kind          string `json:"kind,omitempty"`
	State         State  `json:"state,omitempty"`
	RunID         string `json:"run_id,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	Since         string `json:"since,omitempty"`
	Until         string `json:"until,omitempty"`
	Limit         int    `json:"limit,omitempty"`
	DryRun        bool   `json:"dry_run"`
	Reason        string `json:"reason,omitempty"`
	Ticket        string `json:"ticket,omitempty"`
}

// CancellationResult is what Client.CancelJobs did: Matched jobs (JobIDs, newest first), of
// which Cancelled were cancelled or asked to stop (0 on a dry run; fewer than Matched when some
// ended meanwhile). AuditEventID is the audit event recording it (nil on a dry run).
type CancellationResult struct {
	DryRun       bool     `json:"dry_run"`
	Matched      uint64   `json:"matched"`
	Cancelled    uint64   `json:"cancelled"`
	JobIDs       []string `json:"job_ids"`
	AuditEventID *int64   `json:"audit_event_id"`
}

// ReplayRequest selects the jobs Client.ReplayJobs replays: as CancellationRequest, with State
// dead (the default) or cancelled.
type ReplayRequest struct {
	Queue         string `json:"queue,omitempty"`
	Kind          string `json:"kind,omitempty"`
	State         State  `json:"state,omitempty"`
	RunID         string `json:"run_id,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	Since         string `json:"since,omitempty"`
	Until         string `json:"until,omitempty"`
	Limit         int    `json:"limit,omitempty"`
	DryRun        bool   `json:"dry_run"`
	Reason        string `json:"reason,omitempty"`
	Ticket        string `json:"ticket,omitempty"`
}

// ReplayResult is what Client.ReplayJobs did: Matched jobs (JobIDs, newest first), of which
// Replayed went back to queued (0 on a dry run). AuditEventID as for CancellationResult.
type ReplayResult struct {
	DryRun       bool     `json:"dry_run"`
	Matched      uint64   `json:"matched"`
	Replayed     uint64   `json:"replayed"`
	JobIDs       []string `json:"job_ids"`
	AuditEventID *int64   `json:"audit_event_id"`
}

// StatsPoint is one queue's counts in one minute.
type StatsPoint struct {
	At        time.Time `json:"at"`
	Queue     string    `json:"queue"`
	Leased    uint64    `json:"leased"`    // attempts started
	Succeeded uint64    `json:"succeeded"` // jobs that succeeded
	Failed    uint64    `json:"failed"`    // attempts that failed (expired leases and timeouts too)
	Dead      uint64    `json:"dead"`      // jobs that ended dead
	Cancelled uint64    `json:"cancelled"` // jobs that ended cancelled
}

// JobStats is the tenant's jobs per minute and queue, oldest first; minutes with nothing are
// left out.
type JobStats struct {
	Since      time.Time    `json:"since"`
	Until      time.Time    `json:"until"`
	BucketSecs uint32       `json:"bucket_secs"`
	Points     []StatsPoint `json:"points"`
}

// FailureClass counts the failed attempts of one error class in one queue.
type FailureClass struct {
	Queue  string    `json:"queue"`
	Class  string    `json:"class"` // the failure's class; lease_expired, timeout
	Count  uint64    `json:"count"`
	LastAt time.Time `json:"last_at"` // the minute of the latest
}

// FailureClasses is the tenant's failed attempts by queue and class, most first.
type FailureClasses struct {
	Since   time.Time      `json:"since"`
	Until   time.Time      `json:"until"`
	Classes []FailureClass `json:"classes"`
}

// SLOObjective is a queue's objectives: the share of jobs that must succeed, and the share that
// must be leased within PickupMS of becoming due.
type SLOObjective struct {
	SuccessRatio float64 `json:"success_ratio"`
	PickupMS     uint64  `json:"pickup_ms"`
	PickupRatio  float64 `json:"pickup_ratio"`
}

// SLOMeasure is how one objective fares: Good of Total events met it. Ratio and BurnRate (the
// share that missed over the share allowed to miss; above 1 spends the error budget before the
// window ends) are nil when nothing was counted.
type SLOMeasure struct {
	Good     uint64   `json:"good"`
	Total    uint64   `json:"total"`
	Ratio    *float64 `json:"ratio"`
	BurnRate *float64 `json:"burn_rate"`
}

// QueueSLO is one queue's objectives and how they fare. Configured: set for the queue or the
// tenant rather than the defaults.
type QueueSLO struct {
	Queue      string       `json:"queue"`
	Objective  SLOObjective `json:"objective"`
	Configured bool         `json:"configured"`
	Success    SLOMeasure   `json:"success"`
	Pickup     SLOMeasure   `json:"pickup"`
}

// SLOReport is each queue with activity in the window (or objectives of its own), by name.
type SLOReport struct {
	WindowSecs uint64     `json:"window_secs"`
	Queues     []QueueSLO `json:"queues"`
}

// List returns a page of jobs, newest first, that match q.
func (c *Client) List(ctx context.Context, q JobQuery) (JobPage, error) {
	var out JobPage
	body, err := json.Marshal(q)
	if err != nil {
		return out, err
	}
	err = c.do(ctx, &out, func(p *C.lh_client, cancel *C.lh_cancel, b *C.lh_bytes) C.lh_result {
		ptr, n := cbytes(body)
		return C.lh_client_list(p, ptr, n, cancel, b)
	})
	return out, err
}

// ListRuns returns a page of the tenant's runs, newest first, each with its jobs counted by
// state.
func (c *Client) ListRuns(ctx context.Context, q RunQuery) (RunPage, error) {
	var out RunPage
	body, err := json.Marshal(q)
	if err != nil {
		return out, err
	}
	err = c.do(ctx, &out, func(p *C.lh_client, cancel *C.lh_cancel, b *C.lh_bytes) C.lh_result {
		ptr, n := cbytes(body)
		return C.lh_client_runs(p, ptr, n, cancel, b)
	})
	return out, err
}

// Workers lists the tenant's workers seen since since (an RFC 3339 time or a span back from
// now; "": the last hour) or holding leases now, by worker id.
func (c *Client) Workers(ctx context.Context, since string) ([]WorkerInfo, error) {
	var out []WorkerInfo
	var body []byte
	if since != "" {
		var err error
		if body, err = json.Marshal(map[string]string{"since": since}); err != nil {
			return nil, err
		}
	}
	err := c.do(ctx, &out, func(p *C.lh_client, cancel *C.lh_cancel, b *C.lh_bytes) C.lh_result {
		ptr, n := cbytes(body)
		return C.lh_client_workers(p, ptr, n, cancel, b)
	})
	return out, err
}

// CancelJobs cancels the jobs req selects: waiting ones end cancelled, running ones are asked
// to stop at their next heartbeat. A missing Reason or Ticket fails with ErrInvalidArgument
// naming it, before anything is sent.
func (c *Client) CancelJobs(ctx context.Context, req CancellationRequest) (CancellationResult, error) {
	var out CancellationResult
	body, err := json.Marshal(req)
	if err != nil {
		return out, err
	}
	err = c.do(ctx, &out, func(p *C.lh_client, cancel *C.lh_cancel, b *C.lh_bytes) C.lh_result {
		ptr, n := cbytes(body)
		return C.lh_client_cancel_jobs(p, ptr, n, cancel, b)
	})
	return out, err
}

// ReplayJobs sends the dead (or cancelled) jobs req selects back to queued, each with a fresh
// attempt budget. A missing Reason or Ticket fails with ErrInvalidArgument naming it, before
// anything is sent.
func (c *Client) ReplayJobs(ctx context.Context, req ReplayRequest) (ReplayResult, error) {
	var out ReplayResult
	body, err := json.Marshal(req)
	if err != nil {
		return out, err
	}
	err = c.do(ctx, &out, func(p *C.lh_client, cancel *C.lh_cancel, b *C.lh_bytes) C.lh_result {
		ptr, n := cbytes(body)
		return C.lh_client_replay_jobs(p, ptr, n, cancel, b)
	})
	return out, err
}

// statsQuery is the JSON query of Stats and Failures.
type statsQuery struct {
	Since string `json:"since,omitempty"`
	Queue string `json:"queue,omitempty"`
}

// Stats returns the tenant's jobs per minute and queue from since (an RFC 3339 time or a span
// back from now, at most "8d"; "": the last hour) to now, of queue ("": every queue).
func (c *Client) Stats(ctx context.Context, since, queue string) (JobStats, error) {
	var out JobStats
	body, err := json.Marshal(statsQuery{since, queue})
	if err != nil {
		return out, err
	}
	err = c.do(ctx, &out, func(p *C.lh_client, cancel *C.lh_cancel, b *C.lh_bytes) C.lh_result {
		ptr, n := cbytes(body)
		return C.lh_client_stats(p, ptr, n, cancel, b)
	})
	return out, err
}

// Failures returns the tenant's failed attempts from since ("": the last day) by queue and
// error class, most first, of queue ("": every queue).
func (c *Client) Failures(ctx context.Context, since, queue string) (FailureClasses, error) {
	var out FailureClasses
	body, err := json.Marshal(statsQuery{since, queue})
	if err != nil {
		return out, err
	}
	err = c.do(ctx, &out, func(p *C.lh_client, cancel *C.lh_cancel, b *C.lh_bytes) C.lh_result {
		ptr, n := cbytes(body)
		return C.lh_client_failures(p, ptr, n, cancel, b)
	})
	return out, err
}

// SLO returns each queue's service-level objectives and how they fare over window (a span
// from "1m" to "7d"; "": "1h").
func (c *Client) SLO(ctx context.Context, window string) (SLOReport, error) {
	var out SLOReport
	var body []byte
	if window != "" {
		var err error
		if body, err = json.Marshal(map[string]string{"window": window}); err != nil {
			return out, err
		}
	}
	err := c.do(ctx, &out, func(p *C.lh_client, cancel *C.lh_cancel, b *C.lh_bytes) C.lh_result {
		ptr, n := cbytes(body)
		return C.lh_client_slo(p, ptr, n, cancel, b)
	})
	return out, err
}
