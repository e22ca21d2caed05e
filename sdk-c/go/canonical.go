package leasehold

// #include "leasehold.h"
import "C"

import (
	"encoding/json"
	"unsafe"
)

// The canonical algorithms of the Rust core, computed by the native library (never
// re-implemented here). proto/vectors/ pins them; this package's tests load every vector.

// NativeVersion is the version of the linked libleasehold_c.
func NativeVersion() string { return gostr(C.lh_version()) }

// InitLogging sends the native library's logs to stderr, filtered by an EnvFilter directive
// such as "info" or "leasehold=debug" ("" : $LEASEHOLD_LOG, else "warn"). Only the first call in
// a process has an effect.
func InitLogging(filter string) error {
	return call(func() C.lh_result {
		p, n := cstr(filter)
		return C.lh_log_init(p, n)
	})
}

func bytesCall(f func(out *C.lh_bytes) C.lh_result) ([]byte, error) {
	var b C.lh_bytes
	err := call(func() C.lh_result { return f(&b) })
	out := takeBytes(&b)
	return out, err
}

// Digest is "sha256:" and the 64 lowercase hex digits of SHA-256(data).
func Digest(data []byte) string {
	out, err := bytesCall(func(b *C.lh_bytes) C.lh_result {
		p, n := cbytes(data)
		return C.lh_digest((*C.uint8_t)(unsafe.Pointer(p)), n, b)
	})
	if err != nil {
		panic(err) // cannot fail for valid memory
	}
	return string(out)
}

// CanonicalJSON is the RFC 8785 (JCS) form of a JSON document.
func CanonicalJSON(doc []byte) ([]byte, error) {
	return bytesCall(func(b *C.lh_bytes) C.lh_result {
		p, n := cbytes(doc)
		return C.lh_canonical_json(p, n, b)
	})
}

// ManifestDigest is the digest of an artifact manifest: the artifacts sorted by name, as JCS.
func ManifestDigest(artifacts []Artifact) (string, error) {
	if artifacts == nil {
		artifacts = []Artifact{}
	}
	doc, err := json.Marshal(artifacts)
	if err != nil {
		return "", err
	}
	out, err := bytesCall(func(b *C.lh_bytes) C.lh_result {
		p, n := cbytes(doc)
		return C.lh_manifest_digest(p, n, b)
	})
	return string(out), err
}

// IdempotencyKey is the deterministic key (leasehold-idem-v1) of a JSON payload of kind on
// queue: the key JobSpec.DeterministicKey makes.
func IdempotencyKey(queue, kind string, payload json.RawMessage) (string, error) {
	out, err := bytesCall(func(b *C.lh_bytes) C.lh_result {
		qp, qn := cstr(queue)
		kp, kn := cstr(kind)
		pp, pn := cbytes(payload)
		return C.lh_idempotency_key(qp, qn, kp, kn, pp, pn, b)
	})
	return string(out), err
}

// CheckArtifactName returns nil for a valid artifact name, else an error stating the rule.
func CheckArtifactName(name string) error {
	return call(func() C.lh_result {
		p, n := cstr(name)
		return C.lh_artifact_name_check(p, n)
	})
}

// SplitMix64 is the first n outputs of the SplitMix64 generator seeded with seed.
func SplitMix64(seed uint64, n int) []uint64 {
	out := make([]uint64, n)
	if n == 0 {
		return out
	}
	if err := call(func() C.lh_result {
		return C.lh_splitmix64(C.uint64_t(seed), (*C.uint64_t)(unsafe.Pointer(&out[0])), C.size_t(n))
	}); err != nil {
		panic(err) // cannot fail for valid memory
	}
	return out
}

// RetrySchedule is the schedule of a retry policy for a seeded generator.
type RetrySchedule struct {
	CeilingsMS []uint64 `json:"ceilings_ms"` // attempts 1..MaxAttempts-1, before jitter
	DelaysMS   []uint64 `json:"delays_ms"`   // the jittered delays, drawn in order
	Exhausted  bool     `json:"exhausted"`   // MaxAttempts itself gets no delay
}

// RetryScheduleOf computes the retry schedule (leasehold-retry-v1) of p with SplitMix64
// seeded with seed. Durations in p are whole milliseconds.
func RetryScheduleOf(p RetryPolicy, seed uint64) (RetrySchedule, error) {
	var s RetrySchedule
	doc, err := json.Marshal(p.native())
	if err != nil {
		return s, err
	}
	out, err := bytesCall(func(b *C.lh_bytes) C.lh_result {
		dp, dn := cbytes(doc)
		return C.lh_retry_schedule(dp, dn, C.uint64_t(seed), b)
	})
	if err != nil {
		return s, err
	}
	err = json.Unmarshal(out, &s)
	return s, err
}
