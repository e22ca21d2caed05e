package leasehold

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The tests run against a real coordinator: the `leasehold` binary ($LEASEHOLD_BIN, else
// target/debug/leasehold), started once for the package on a free port with SQLite in a temp
// dir. Each test uses queues of its own.

var coordURL string

const patience = 30 * time.Second

func TestMain(m *testing.M) {
	os.Exit(runWithCoordinator(m))
}

func runWithCoordinator(m *testing.M) int {
	bin := os.Getenv("LEASEHOLD_BIN")
	if bin == "" {
		bin = filepath.Join("..", "..", "target", "debug", "leasehold")
	}
	if _, err := os.Stat(bin); err != nil {
		fmt.Fprintf(os.Stderr, "no coordinator binary at %s (build it with `cargo build -p leasehold-coordinator` or set LEASEHOLD_BIN): %v\n", bin, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "leasehold-go-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	addr := l.Addr().String()
	l.Close()
	logPath := filepath.Join(dir, "coordinator.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "serve", "--listen", addr, "--data-dir", dir)
	env := []string{"LEASEHOLD_LOG=warn"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "LEASEHOLD_DATABASE_URL=") &&
			!strings.HasPrefix(kv, "LEASEHOLD_LOG=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	dieWithUs(cmd)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting the coordinator:", err)
		return 1
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	coordURL = "http://" + addr
	deadline := time.Now().Add(patience)
	for {
		r, err := http.Get(coordURL + "/health")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			fmt.Fprintf(os.Stderr, "the coordinator did not become healthy; log:\n%s\n", log)
			return 1
		}
		time.Sleep(25 * time.Millisecond)
	}
	code := m.Run()
	if code != 0 {
		log, _ := os.ReadFile(logPath)
		if len(log) > 0 {
			fmt.Fprintf(os.Stderr, "coordinator log:\n%s\n", log)
		}
	}
	return code
}

var queueChars = regexp.MustCompile(`[^A-Za-z0-9_.:-]+`)

var queueSeq atomic.Int64

// queueFor names a fresh queue after the test (fresh on every run, so -count=N works against
// one coordinator).
func queueFor(t *testing.T) string {
	q := queueChars.ReplaceAllString(t.Name(), "-")
	if len(q) > 100 {
		q = q[:100]
	}
	return fmt.Sprintf("go-%s-%d", q, queueSeq.Add(1))
}

func newClient(t *testing.T) *Client {
	t.Helper()
	c, err := NewClient(ClientConfig{URL: coordURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	t.Cleanup(cancel)
	return ctx
}

// runningWorker runs w in the background until stop is called.
type runningWorker struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func startWorker(t *testing.T, w *Worker) *runningWorker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rw := &runningWorker{cancel: cancel, done: make(chan error, 1)}
	go func() { rw.done <- w.Run(ctx) }()
	t.Cleanup(func() { _ = rw.stop() })
	return rw
}

// stop cancels Run's context and waits for it to return (its error).
func (rw *runningWorker) stop() error {
	rw.once.Do(func() {
		rw.cancel()
		select {
		case rw.err = <-rw.done:
		case <-time.After(patience):
			rw.err = fmt.Errorf("Run did not return within %v of its ctx being cancelled", patience)
		}
	})
	return rw.err
}

func testConfig(t *testing.T, queue string) Config {
	return Config{
		URL:          coordURL,
		Queues:       []string{queue},
		Concurrency:  8,
		LeaseTTL:     time.Second,
		PollWait:     2 * time.Second,
		AppVersion:   "go-tests/1",
		DrainTimeout: 5 * time.Second,
		CancelGrace:  2 * time.Second,
	}
}

func newWorker(t *testing.T, cfg Config) *Worker {
	t.Helper()
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// postJSON sends a request to the coordinator behind the SDK's back.
func postJSON(t *testing.T, path string, body any) (int, []byte) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	r, err := http.Post(coordURL+path, "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var out bytes.Buffer
	_, _ = out.ReadFrom(r.Body)
	return r.StatusCode, out.Bytes()
}

// waitFor polls probe until it is true or patience runs out.
func waitFor(t *testing.T, what string, probe func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	every := 10 * time.Millisecond
	for !probe() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(every)
		every = min(2*every, 200*time.Millisecond)
	}
}

// recv receives from ch or fails the test after patience.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
