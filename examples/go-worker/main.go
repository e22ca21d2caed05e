// Command go-worker is a Leasehold worker written with the Go SDK: it counts the words of a
// text, reporting progress, checkpointing so that a retried attempt resumes where the last one
// stopped, stopping early when its job is cancelled or its lease lost, and publishing the counts
// as an artifact.
//
// Run with (from the repository root; see README.md):
//
//	cargo build -p leasehold-c                         # the native library, once
//	leasehold serve &                                  # a coordinator on :7070
//	cd examples/go-worker
//	go run . work                                      # the worker; Ctrl-C drains it
//	go run . enqueue "the quick brown fox jumps over the lazy dog the end"
//	go run . demo                                      # enqueue 3 jobs, work them, check, exit
//	go run . demo -url http://127.0.0.1:7070           # -url goes before or after the command
//
// Expected output of `go run . demo` (ids and digests differ):
//
//	enqueued 3 jobs on queue go-demo
//	job 01a2…: succeeded in 1 attempt(s): 4 words, 3 distinct, top "a" ×2, artifact counts.json sha256:…
//	job 01a2…: succeeded in 1 attempt(s): 9 words, 8 distinct, top "the" ×2, artifact counts.json sha256:…
//	job 01a2…: succeeded in 2 attempt(s): 6 words, 4 distinct, top "be" ×2, artifact counts.json sha256:… (resumed from a checkpoint)
//	demo ok
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	leasehold "example.invalid/leasehold/sdk-c/go"
)

const (
	queue = "go-demo"
	kind  = "count_words"
)

// Input is the job's payload.
type Input struct {
	Text string `json:"text"`
	// FailFirst makes attempt 1 fail after its first checkpoint (to show a resumed retry).
	FailFirst bool `json:"fail_first,omitempty"`
}

// Progress is what a checkpoint holds: how far the count got.
type Progress struct {
	Done   int            `json:"done"`
	Counts map[string]int `json:"counts"`
}

// Output is the job's result.
type Output struct {
	Words    int    `json:"words"`
	Distinct int    `json:"distinct"`
	Top      string `json:"top"`
	TopCount int    `json:"top_count"`
	Resumed  bool   `json:"resumed"`
}

func countWords(ctx context.Context, job *leasehold.Job) (any, error) {
	var in Input
	if err := job.Decode(&in); err != nil {
		return nil, err // a leasehold.Fatal: another attempt would see the same payload
	}
	words := strings.Fields(strings.ToLower(in.Text))
	state := Progress{Counts: map[string]int{}}
	last, err := job.LastCheckpoint()
	if err != nil {
		return nil, err
	}
	resumed := last != nil
	if resumed {
		if err := json.Unmarshal(last, &state); err != nil {
			return nil, leasehold.Fatal(fmt.Errorf("unreadable checkpoint: %w", err))
		}
	}
	const chunk = 2
	for state.Done < len(words) {
		// Stop early when the job is cancelled, its lease lost, or the worker shutting down.
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
		end := min(state.Done+chunk, len(words))
		for _, w := range words[state.Done:end] {
			state.Counts[w]++
		}
		state.Done = end
		if err := job.Checkpoint(state); err != nil {
			return nil, err
		}
		if err := job.Progress(map[string]int{"done": state.Done, "of": len(words)}); err != nil {
			return nil, err
		}
		if in.FailFirst && job.Attempt() == 1 {
			return nil, leasehold.RetryAfter(100*time.Millisecond, errors.New("failing on purpose after a checkpoint"))
		}
	}
	counts, err := json.Marshal(state.Counts)
	if err != nil {
		return nil, err
	}
	if _, err := job.PutArtifactBytes(ctx, "counts.json", "application/json", counts); err != nil {
		return nil, err
	}
	out := Output{Words: len(words), Distinct: len(state.Counts), Resumed: resumed}
	keys := make([]string, 0, len(state.Counts))
	for w := range state.Counts {
		keys = append(keys, w)
	}
	sort.Strings(keys)
	for _, w := range keys {
		if state.Counts[w] > out.TopCount {
			out.Top, out.TopCount = w, state.Counts[w]
		}
	}
	return out, nil
}

func newWorker(url string) (*leasehold.Worker, error) {
	w, err := leasehold.NewWorker(leasehold.Config{
		URL:         url,
		Queues:      []string{queue},
		Concurrency: 4,
		LeaseTTL:    10 * time.Second,
		AppVersion:  "go-worker/1",
	})
	if err != nil {
		return nil, err
	}
	w.Handle(kind, countWords)
	return w, nil
}

func work(ctx context.Context, url string) error {
	w, err := newWorker(url)
	if err != nil {
		return err
	}
	fmt.Println("working queue", queue, "at", url, "(Ctrl-C drains)")
	return w.Run(ctx)
}

func describe(j leasehold.JobRecord) string {
	if j.State != leasehold.StateSucceeded {
		return fmt.Sprintf("job %s: %s (last error %+v)", j.ID, j.State, j.LastError)
	}
	var out Output
	_ = json.Unmarshal(j.Result, &out)
	s := fmt.Sprintf("job %s: succeeded in %d attempt(s): %d words, %d distinct, top %q ×%d",
		j.ID, j.Attempt, out.Words, out.Distinct, out.Top, out.TopCount)
	for _, a := range j.Artifacts {
		s += fmt.Sprintf(", artifact %s %s", a.Name, a.Digest)
	}
	if out.Resumed {
		s += " (resumed from a checkpoint)"
	}
	return s
}

func enqueue(ctx context.Context, url string, texts []string, failFirst bool) ([]leasehold.JobRecord, error) {
	client, err := leasehold.NewClient(leasehold.ClientConfig{URL: url})
	if err != nil {
		return nil, err
	}
	defer client.Close()
	var jobs []leasehold.JobRecord
	for i, text := range texts {
		j, err := client.Enqueue(ctx, leasehold.JobSpec{
			Queue:   queue,
			Kind:    kind,
			Payload: Input{Text: text, FailFirst: failFirst && i == len(texts)-1},
		})
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

func waitAll(ctx context.Context, url string, jobs []leasehold.JobRecord) ([]leasehold.JobRecord, error) {
	client, err := leasehold.NewClient(leasehold.ClientConfig{URL: url})
	if err != nil {
		return nil, err
	}
	defer client.Close()
	var done []leasehold.JobRecord
	for _, j := range jobs {
		d, err := client.Wait(ctx, j.ID)
		if err != nil {
			return nil, err
		}
		done = append(done, d)
	}
	return done, nil
}

// demo enqueues three jobs (the last fails once on purpose), works them, checks the results.
func demo(ctx context.Context, url string) error {
	texts := []string{"a b a c", "the quick brown fox jumps over the lazy dog", "to be or not to be"}
	jobs, err := enqueue(ctx, url, texts, true)
	if err != nil {
		return err
	}
	fmt.Printf("enqueued %d jobs on queue %s\n", len(jobs), queue)
	w, err := newWorker(url)
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- w.Run(runCtx) }()
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	done, err := waitAll(waitCtx, url, jobs)
	stop()
	if runErr := <-ran; runErr != nil {
		return runErr
	}
	if err != nil {
		return err
	}
	want := []Output{{Words: 4, Distinct: 3, Top: "a", TopCount: 2}, {Words: 9, Distinct: 8, Top: "the", TopCount: 2}, {Words: 6, Distinct: 4, Top: "be", TopCount: 2, Resumed: true}}
	for i, d := range done {
		fmt.Println(describe(d))
		var out Output
		if d.State != leasehold.StateSucceeded || json.Unmarshal(d.Result, &out) != nil || out != want[i] || len(d.Artifacts) != 1 {
			return fmt.Errorf("job %s is not as expected (want %+v)", d.ID, want[i])
		}
	}
	if done[2].Attempt != 2 {
		return fmt.Errorf("the last job took %d attempts, want 2", done[2].Attempt)
	}
	fmt.Println("demo ok")
	return nil
}

const usage = "usage: go-worker [-url URL] work | enqueue TEXT... | demo   (-url may also follow the command)"

// parseArgs reads the command line: flags before the command, or right after it (`demo -url
// http://…`). Anything it cannot place is an error, never silently ignored.
func parseArgs(args []string) (url, cmd string, rest []string, err error) {
	const defaultURL = "http://127.0.0.1:7070"
	global := flag.NewFlagSet("go-worker", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	global.StringVar(&url, "url", defaultURL, "coordinator URL")
	if err := global.Parse(args); err != nil {
		return "", "", nil, err
	}
	if global.NArg() == 0 {
		return "", "", nil, errors.New("no command given")
	}
	cmd = global.Arg(0)
	sub := flag.NewFlagSet(cmd, flag.ContinueOnError)
	sub.SetOutput(io.Discard)
	sub.StringVar(&url, "url", url, "coordinator URL")
	if err := sub.Parse(global.Args()[1:]); err != nil {
		return "", "", nil, fmt.Errorf("%s: %w", cmd, err)
	}
	rest = sub.Args()
	switch cmd {
	case "work", "demo":
		if len(rest) > 0 {
			return "", "", nil, fmt.Errorf("%s takes no arguments, got %q", cmd, rest)
		}
	case "enqueue":
		if len(rest) == 0 {
			return "", "", nil, errors.New("enqueue needs at least one TEXT")
		}
		for _, a := range rest {
			if a == "-url" || a == "--url" || strings.HasPrefix(a, "-url=") || strings.HasPrefix(a, "--url=") {
				return "", "", nil, fmt.Errorf("enqueue: put -url before the texts, not among them (%q)", a)
			}
		}
	default:
		return "", "", nil, fmt.Errorf("unknown command %q", cmd)
	}
	return url, cmd, rest, nil
}

func main() {
	url, cmd, rest, err := parseArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "work":
		err = work(ctx, url)
	case "enqueue":
		var jobs []leasehold.JobRecord
		jobs, err = enqueue(ctx, url, rest, false)
		if err == nil {
			fmt.Printf("enqueued %d job(s); waiting (run `go run . work` elsewhere)\n", len(jobs))
			var done []leasehold.JobRecord
			done, err = waitAll(ctx, url, jobs)
			for _, d := range done {
				fmt.Println(describe(d))
			}
		}
	case "demo":
		err = demo(ctx, url)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
