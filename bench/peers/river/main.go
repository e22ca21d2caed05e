// Command riverpeer drives River (github.com/riverqueue/river, pgx v5 driver) through its
// public API in the shapes of Leasehold's W3, W4 and W5 workloads.
//
// Run by the benchmark harness; prints exactly one JSON object on stdout (logs go to stderr).
// Before each workload River's migrations are applied (rivermigrate, up; idempotent) and
// river_job is truncated so a run never sees earlier jobs. Every job carries the args
// {"i": n, "t": intended-arrival-unix-ns or 0, "pad": "0123456789abcdef0123"} (~50 bytes).
// Every subcommand takes --dsn URL and --timeout SECONDS (default 600).
//
//	version:    {"version": River's module version, "go": Go runtime version, "pgx": ...}.
//	w3:         insert N "sleep" jobs (InsertManyFast, batches of 1000), then start one client
//	            with one queue of MaxWorkers S; time from Client.Start until the N-th handler
//	            (time.Sleep of --sleep-ms, honouring ctx) has returned. River's completer marks
//	            jobs completed asynchronously in batches, so the clock stops at "worker
//	            returned"; completed_rows is counted after Client.Stop has flushed.
//	w4:         one idle worker client (queue "default", MaxWorkers 100, River's default fetch
//	            settings and LISTEN/NOTIFY); after 300 ms a producer (a separate insert-only
//	            client with its own pool) issues single Client.Insert calls open loop at R jobs/s
//	            for T seconds, each arrival in its own goroutine so a slow insert never delays
//	            the next; latency = handler start - intended arrival time.
//	w5-single:  closed loop: C goroutines call Client.Insert (an insert-only client; each call
//	            its own transaction) until T seconds have passed; per-call latency.
//	w5-bulk:    one goroutine inserts N rows in batches of B with InsertManyFast (COPY FROM),
//	            or with InsertMany (INSERT ... RETURNING) under --method many.
//
// w3 and w4 also take --fetch-cooldown-ms and --fetch-poll-interval-ms (River's
// Config.FetchCooldown and FetchPollInterval; defaults are River's, 100 and 1000).
//
// The harness measures the database's CPU and commits around this program; the program
// reports its own CPU (user+system, getrusage RUSAGE_SELF, over the measured phase) as
// worker_cpu_s and its peak RSS as worker_peak_rss_mib.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

const pad = "0123456789abcdef0123"

// River's own default logger writes to stdout; ours goes to stderr.
var logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

type noopArgs struct {
	I   int64  `json:"i"`
	T   int64  `json:"t"`
	Pad string `json:"pad"`
}

func (noopArgs) Kind() string { return "noop" }

// sleepArgs has the same payload as noopArgs but its worker sleeps (W3).
type sleepArgs struct{ noopArgs }

func (sleepArgs) Kind() string { return "sleep" }

// noopWorker records handler-start latency against args.T when rec is set (W4).
type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	rec func(latNs int64)
}

func (w *noopWorker) Work(_ context.Context, job *river.Job[noopArgs]) error {
	if w.rec != nil {
		w.rec(time.Now().UnixNano() - job.Args.T)
	}
	return nil
}

// sleepWorker sleeps d (honouring ctx) and then counts itself done (W3).
type sleepWorker struct {
	river.WorkerDefaults[sleepArgs]
	d    time.Duration
	done func()
}

func (w *sleepWorker) Work(ctx context.Context, _ *river.Job[sleepArgs]) error {
	t := time.NewTimer(w.d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	w.done()
	return nil
}

// opts holds the flags shared by the subcommands.
type opts struct {
	dsn                string
	timeout            float64
	cooldownMs, pollMs int
}

// setup opens a pool of conns connections (all opened up front, so that connection setup is
// never measured), optionally migrates River up and empties river_job, and builds a client
// (an insert-only one when queues is nil). The noop worker is registered unless register
// is given.
func (o *opts) setup(ctx context.Context, conns int32, prepare bool, queues map[string]river.QueueConfig,
	register func(*river.Workers)) (*pgxpool.Pool, *river.Client[pgx.Tx], error) {
	cfg, err := pgxpool.ParseConfig(o.dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("bad --dsn: %w", err)
	}
	cfg.MaxConns = conns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*pgxpool.Pool, *river.Client[pgx.Tx], error) { pool.Close(); return nil, nil, err }
	held := make([]*pgxpool.Conn, 0, conns)
	for err == nil && len(held) < int(conns) {
		var c *pgxpool.Conn
		if c, err = pool.Acquire(ctx); err == nil {
			held = append(held, c)
		}
	}
	for _, c := range held {
		c.Release() // before any pool.Close, which waits for acquired connections
	}
	if err != nil {
		return fail(err)
	}
	if prepare {
		migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: logger})
		if err != nil {
			return fail(err)
		}
		if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
			return fail(fmt.Errorf("river migrate up: %w", err))
		}
		if _, err := pool.Exec(ctx, "TRUNCATE river_job"); err != nil {
			return fail(err)
		}
	}
	workers := river.NewWorkers()
	if register != nil {
		register(workers)
	} else {
		river.AddWorker(workers, &noopWorker{}) // lets River check the kind on insert
	}
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		FetchCooldown:     time.Duration(o.cooldownMs) * time.Millisecond, // 0: River's default
		FetchPollInterval: time.Duration(o.pollMs) * time.Millisecond,
		Logger:            logger,
		Queues:            queues,
		Workers:           workers,
	})
	if err != nil {
		return fail(err)
	}
	return pool, client, nil
}

func (o *opts) fetchSettings(s map[string]any) map[string]any {
	s["fetch_cooldown_ms"] = o.cooldownMs
	s["fetch_poll_interval_ms"] = o.pollMs
	s["fetch_defaults"] = time.Duration(o.cooldownMs)*time.Millisecond == river.FetchCooldownDefault &&
		time.Duration(o.pollMs)*time.Millisecond == river.FetchPollIntervalDefault
	s["poll_only"] = false
	s["completer"] = "BatchCompleter (River's default, async batched)"
	return s
}

func rusage() (cpuSecs, peakRSSMiB float64) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9, float64(ru.Maxrss) / 1024 // KiB on Linux
}

func cpuSeconds() float64 { cpu, _ := rusage(); return cpu }

// result starts an output object with worker_cpu_s (since cpu0) and worker_peak_rss_mib.
func result(cpu0 float64) map[string]any {
	cpu, rss := rusage()
	return map[string]any{"worker_cpu_s": cpu - cpu0, "worker_peak_rss_mib": rss}
}

func latencyMs(ns []int64) map[string]any {
	if len(ns) == 0 {
		return map[string]any{"n": 0}
	}
	sort.Slice(ns, func(a, b int) bool { return ns[a] < ns[b] })
	pct := func(p float64) float64 {
		return float64(ns[min(len(ns)-1, int(math.Round(float64(len(ns)-1)*p)))]) / 1e6
	}
	return map[string]any{"n": len(ns), "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": float64(ns[len(ns)-1]) / 1e6}
}

func insertBatches(ctx context.Context, client *river.Client[pgx.Tx], n, batch int, fast bool, mk func(i int64) river.JobArgs) error {
	params := make([]river.InsertManyParams, 0, batch)
	for lo := 0; lo < n; lo += batch {
		params = params[:0]
		for i := lo; i < min(n, lo+batch); i++ {
			params = append(params, river.InsertManyParams{Args: mk(int64(i))})
		}
		var err error
		if fast {
			_, err = client.InsertManyFast(ctx, params)
		} else {
			_, err = client.InsertMany(ctx, params)
		}
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
	}
	return nil
}

// abandon hard-stops a running client after a timeout so its pool can close quietly.
func abandon(client *river.Client[pgx.Tx]) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = client.StopAndCancel(ctx)
}

func runW3(ctx context.Context, o *opts, jobs, slots, sleepMs int) (map[string]any, error) {
	const poolConns = 10
	var doneCount atomic.Int64
	allDone := make(chan struct{})
	pool, client, err := o.setup(ctx, poolConns, true, map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: slots}},
		func(w *river.Workers) {
			river.AddWorker(w, &sleepWorker{d: time.Duration(sleepMs) * time.Millisecond, done: func() {
				if doneCount.Add(1) == int64(jobs) {
					close(allDone)
				}
			}})
		})
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if err := insertBatches(ctx, client, jobs, 1000, true, func(i int64) river.JobArgs {
		return sleepArgs{noopArgs{I: i, Pad: pad}}
	}); err != nil {
		return nil, err
	}

	cpu0 := cpuSeconds()
	started := time.Now()
	if err := client.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, err
	}
	startSecs := time.Since(started).Seconds()
	select {
	case <-allDone:
	case <-ctx.Done():
		abandon(client)
		return nil, fmt.Errorf("timed out: %d of %d jobs done", doneCount.Load(), jobs)
	}
	secs := time.Since(started).Seconds()
	out := result(cpu0)
	stopStart := time.Now()
	if err := client.Stop(ctx); err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	var completed int64
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE state = 'completed'").Scan(&completed); err != nil {
		return nil, err
	}
	ideal := float64(slots) / (float64(sleepMs) / 1000)
	out["jobs"], out["secs"], out["jobs_per_s"] = jobs, secs, float64(jobs)/secs
	out["ideal_per_s"], out["efficiency"] = ideal, float64(jobs)/secs/ideal
	out["completed_rows"] = completed
	out["start_secs"], out["stop_secs"] = startSecs, time.Since(stopStart).Seconds()
	out["settings"] = o.fetchSettings(map[string]any{
		"queue": river.QueueDefault, "max_workers": slots, "sleep_ms": sleepMs,
		"pool_max_conns": poolConns, "clients": 1,
		"preload": "InsertManyFast (COPY FROM), batches of 1000, before Client.Start",
		"timed":   "Client.Start until the N-th handler returned",
		"done_at": "worker returned (completions are persisted asynchronously; see completed_rows, counted after Client.Stop)",
	})
	return out, nil
}

func runW4(ctx context.Context, o *opts, rate, seconds float64) (map[string]any, error) {
	const workerConns, producerConns, maxWorkers = 10, 16, 100
	count := max(1, int(math.Round(rate*seconds)))
	var mu sync.Mutex
	lat := make([]int64, 0, count)
	received := func() int { mu.Lock(); defer mu.Unlock(); return len(lat) }
	pool, consumer, err := o.setup(ctx, workerConns, true, map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: maxWorkers}},
		func(w *river.Workers) {
			river.AddWorker(w, &noopWorker{rec: func(ns int64) { mu.Lock(); lat = append(lat, ns); mu.Unlock() }})
		})
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	ppool, producer, err := o.setup(ctx, producerConns, false, nil, nil)
	if err != nil {
		return nil, err
	}
	defer ppool.Close()

	cpu0 := cpuSeconds()
	if err := consumer.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, err
	}
	time.Sleep(300 * time.Millisecond) // idle and listening
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now().Add(200 * time.Millisecond)
	for i := range count {
		intended := start.Add(time.Duration(float64(i) / rate * 1e9))
		time.Sleep(time.Until(intended))
		if ctx.Err() != nil {
			abandon(consumer)
			return nil, fmt.Errorf("timed out after %d of %d arrivals", i, count)
		}
		wg.Add(1)
		go func(i, t int64) {
			defer wg.Done()
			if _, err := producer.Insert(ctx, noopArgs{I: i, T: t, Pad: pad}, nil); err != nil {
				if errs.Add(1) == 1 {
					logger.Error("insert failed", "err", err)
				}
			}
		}(int64(i), intended.UnixNano())
	}
	wg.Wait()
	want := count - int(errs.Load())
	for received() < want && ctx.Err() == nil {
		time.Sleep(2 * time.Millisecond)
	}
	if want == 0 || received() < want {
		abandon(consumer)
		return nil, fmt.Errorf("%d of %d jobs handled (%d insert errors)", received(), count, errs.Load())
	}
	if err := consumer.Stop(ctx); err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	out := result(cpu0)
	mu.Lock()
	defer mu.Unlock()
	out["jobs"], out["secs"], out["jobs_per_s"] = count, seconds, rate
	out["latency_ms"], out["errors"] = latencyMs(lat), errs.Load()
	out["settings"] = o.fetchSettings(map[string]any{
		"queue": river.QueueDefault, "max_workers": maxWorkers, "listen_notify": true,
		"worker_pool_max_conns": workerConns, "producer_pool_max_conns": producerConns,
		"producer": "separate insert-only river.Client (own pool), one Client.Insert per arrival in its own goroutine",
		"latency":  "handler start - intended arrival", "idle_ms": 300, "start_in_ms": 200,
	})
	return out, nil
}

func runW5Single(ctx context.Context, o *opts, clients int, seconds float64) (map[string]any, error) {
	poolConns := int32(max(clients, 4))
	pool, client, err := o.setup(ctx, poolConns, true, nil, nil)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	lats := make([][]int64, clients)
	var errs, seq atomic.Int64
	var wg sync.WaitGroup
	cpu0 := cpuSeconds()
	started := time.Now()
	deadline := started.Add(time.Duration(seconds * 1e9))
	for g := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t0 := time.Now(); t0.Before(deadline) && ctx.Err() == nil; t0 = time.Now() {
				if _, err := client.Insert(ctx, noopArgs{I: seq.Add(1), Pad: pad}, nil); err != nil {
					if errs.Add(1) == 1 {
						logger.Error("insert failed", "err", err)
					}
					continue
				}
				lats[g] = append(lats[g], time.Since(t0).Nanoseconds())
			}
		}()
	}
	wg.Wait()
	secs := time.Since(started).Seconds()
	out := result(cpu0)
	if ctx.Err() != nil {
		return nil, errors.New("timed out")
	}
	var all []int64
	for _, l := range lats {
		all = append(all, l...)
	}
	out["jobs"], out["secs"], out["jobs_per_s"] = len(all), secs, float64(len(all))/secs
	out["latency_ms"], out["errors"] = latencyMs(all), errs.Load()
	out["settings"] = map[string]any{
		"clients": clients, "pool_max_conns": poolConns,
		"insert": "Client.Insert(ctx, args, nil) on an insert-only client (no queues); each call its own transaction",
		"notify": "River sends an insert NOTIFY at most once per FetchCooldown (100 ms default) per queue",
	}
	return out, nil
}

func runW5Bulk(ctx context.Context, o *opts, rows, batch int, method string) (map[string]any, error) {
	const poolConns = 4
	pool, client, err := o.setup(ctx, poolConns, true, nil, nil)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	cpu0 := cpuSeconds()
	started := time.Now()
	if err := insertBatches(ctx, client, rows, batch, method == "fast", func(i int64) river.JobArgs {
		return noopArgs{I: i, Pad: pad}
	}); err != nil {
		return nil, err
	}
	secs := time.Since(started).Seconds()
	out := result(cpu0)
	out["jobs"], out["secs"], out["jobs_per_s"] = rows, secs, float64(rows)/secs
	out["settings"] = map[string]any{
		"batch": batch, "pool_max_conns": poolConns, "clients": 1, "transaction": "one per batch",
		"method": map[string]string{"fast": "InsertManyFast (COPY FROM, no RETURNING)", "many": "InsertMany (INSERT ... RETURNING)"}[method],
	}
	return out, nil
}

func versionInfo() map[string]any {
	out := map[string]any{"go": runtime.Version(), "version": "unknown"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/riverqueue/river":
				out["version"] = d.Version
			case "github.com/jackc/pgx/v5":
				out["pgx"] = d.Version
			}
		}
	}
	return out
}

func fail(code int, format string, a ...any) {
	fmt.Fprintf(os.Stderr, "riverpeer: "+format+"\n", a...)
	os.Exit(code)
}

func main() {
	if len(os.Args) < 2 {
		fail(2, "usage: riverpeer {version|w3|w4|w5-single|w5-bulk} [flags]")
	}
	cmd := os.Args[1]
	own := map[string]string{"version": "", "w3": "jobs slots sleep-ms fetch-cooldown-ms fetch-poll-interval-ms",
		"w4": "rate seconds fetch-cooldown-ms fetch-poll-interval-ms", "w5-single": "clients seconds", "w5-bulk": "rows batch method"}
	if _, ok := own[cmd]; !ok {
		fail(2, "unknown subcommand %q (want version, w3, w4, w5-single or w5-bulk)", cmd)
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	var o opts
	fs.StringVar(&o.dsn, "dsn", "", "PostgreSQL URL (required)")
	fs.Float64Var(&o.timeout, "timeout", 600, "give up after this many seconds")
	if cmd == "w3" || cmd == "w4" {
		fs.IntVar(&o.cooldownMs, "fetch-cooldown-ms", int(river.FetchCooldownDefault/time.Millisecond), "River Config.FetchCooldown")
		fs.IntVar(&o.pollMs, "fetch-poll-interval-ms", int(river.FetchPollIntervalDefault/time.Millisecond), "River Config.FetchPollInterval")
	}
	jobs := fs.Int("jobs", 10000, "w3: jobs to insert and work")
	slots := fs.Int("slots", 10, "w3: queue MaxWorkers")
	sleepMs := fs.Int("sleep-ms", 10, "w3: each job's sleep in ms")
	rate := fs.Float64("rate", 100, "w4: arrivals per second")
	seconds := fs.Float64("seconds", 5, "w4: seconds of arrivals; w5-single: seconds to run")
	clients := fs.Int("clients", 1, "w5-single: concurrent inserting goroutines")
	rows := fs.Int("rows", 100000, "w5-bulk: rows to insert")
	batch := fs.Int("batch", 1000, "w5-bulk: rows per InsertManyFast/InsertMany call")
	method := fs.String("method", "fast", "w5-bulk: fast (InsertManyFast) or many (InsertMany)")
	if err := fs.Parse(os.Args[2:]); err != nil {
		fail(2, "%s: %v", cmd, err)
	}
	if fs.NArg() > 0 {
		fail(2, "%s: unexpected arguments %v", cmd, fs.Args())
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "dsn" && f.Name != "timeout" && !slices.Contains(strings.Fields(own[cmd]), f.Name) {
			fail(2, "%s: flag --%s does not apply to this subcommand", cmd, f.Name)
		}
	})
	bad := func(cond bool, msg string) {
		if cond {
			fail(2, "%s: %s", cmd, msg)
		}
	}
	positive := func(v float64) bool { return v > 0 && !math.IsInf(v, 0) }
	bad(!positive(o.timeout), "--timeout must be > 0")
	bad(cmd != "version" && o.dsn == "", "--dsn is required")
	if cmd == "w3" || cmd == "w4" {
		bad(o.cooldownMs < 1, "--fetch-cooldown-ms must be >= 1")
		bad(o.pollMs < o.cooldownMs, "--fetch-poll-interval-ms must be >= --fetch-cooldown-ms")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(o.timeout*1e9))
	defer cancel()

	var out map[string]any
	var err error
	switch cmd {
	case "version":
		out = versionInfo()
	case "w3":
		bad(*jobs < 1, "--jobs must be >= 1")
		bad(*slots < 1 || *slots > river.QueueNumWorkersMax, "--slots must be in 1..10000")
		bad(*sleepMs < 1, "--sleep-ms must be >= 1")
		out, err = runW3(ctx, &o, *jobs, *slots, *sleepMs)
	case "w4":
		bad(!positive(*rate), "--rate must be > 0")
		bad(!positive(*seconds), "--seconds must be > 0")
		out, err = runW4(ctx, &o, *rate, *seconds)
	case "w5-single":
		bad(*clients < 1, "--clients must be >= 1")
		bad(!positive(*seconds), "--seconds must be > 0")
		out, err = runW5Single(ctx, &o, *clients, *seconds)
	case "w5-bulk":
		bad(*rows < 1, "--rows must be >= 1")
		bad(*batch < 1, "--batch must be >= 1")
		bad(*method != "fast" && *method != "many", "--method must be fast or many")
		out, err = runW5Bulk(ctx, &o, *rows, *batch, *method)
	}
	if err != nil {
		fail(1, "%s: %v", cmd, err)
	}
	if cmd != "version" {
		out["river_version"] = versionInfo()["version"]
	}
	enc, err := json.Marshal(out)
	if err != nil {
		fail(1, "encode: %v", err)
	}
	fmt.Println(string(enc))
}
