package leasehold

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// Every file in proto/vectors/ is checked against the native library (the Rust core's code);
// a vector file this test does not know fails it, so a new one cannot be skipped silently.

var vectorDir = filepath.Join("..", "..", "proto", "vectors")

var vectorCheckers = map[string]func(t *testing.T, raw []byte){
	"artifact_digests.json": checkArtifactDigests,
	"manifest_digests.json": checkManifestDigests,
	"artifact_names.json":   checkArtifactNames,
	"idempotency_keys.json": checkIdempotencyKeys,
	"retry_schedules.json":  checkRetrySchedules,
}

func TestEveryVector(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(vectorDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no vectors in %s: %v", vectorDir, err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			check, ok := vectorCheckers[name]
			if !ok {
				t.Fatalf("no Go check for vector file %s: add one", name)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			check(t, raw)
		})
	}
}

func decodeHex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkArtifactDigests(t *testing.T, raw []byte) {
	var v struct {
		Cases []struct {
			Name   string  `json:"name"`
			UTF8   *string `json:"utf8"`
			Hex    *string `json:"hex"`
			Size   int     `json:"size"`
			Digest string  `json:"digest"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range v.Cases {
		var data []byte
		if c.UTF8 != nil {
			data = []byte(*c.UTF8)
		} else {
			data = decodeHex(t, *c.Hex)
		}
		if len(data) != c.Size {
			t.Fatalf("%s: %d bytes, vector says %d", c.Name, len(data), c.Size)
		}
		sum := sha256.Sum256(data)
		std := "sha256:" + hex.EncodeToString(sum[:])
		if got := Digest(data); got != c.Digest || std != c.Digest {
			t.Fatalf("%s: native %s, crypto/sha256 %s, vector %s", c.Name, got, std, c.Digest)
		}
	}
}

func checkManifestDigests(t *testing.T, raw []byte) {
	var v struct {
		Cases []struct {
			Name      string     `json:"name"`
			Artifacts []Artifact `json:"artifacts"`
			Canonical string     `json:"canonical"`
			Digest    string     `json:"digest"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range v.Cases {
		got, err := ManifestDigest(c.Artifacts)
		if err != nil || got != c.Digest {
			t.Fatalf("%s: %s %v, want %s", c.Name, got, err, c.Digest)
		}
		// The canonical text hashes to the digest, and it is the JCS form of the sorted array.
		if Digest([]byte(c.Canonical)) != c.Digest {
			t.Fatalf("%s: canonical text does not hash to the digest", c.Name)
		}
		sorted := slices.Clone(c.Artifacts)
		slices.SortFunc(sorted, func(a, b Artifact) int {
			if a.Name < b.Name {
				return -1
			}
			if a.Name > b.Name {
				return 1
			}
			return 0
		})
		if sorted == nil {
			sorted = []Artifact{}
		}
		doc, _ := json.Marshal(sorted)
		canon, err := CanonicalJSON(doc)
		if err != nil || string(canon) != c.Canonical {
			t.Fatalf("%s: canonical %s %v, want %s", c.Name, canon, err, c.Canonical)
		}
	}
}

func checkArtifactNames(t *testing.T, raw []byte) {
	var v struct {
		Valid   []string `json:"valid"`
		Invalid []string `json:"invalid"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Valid) == 0 || len(v.Invalid) == 0 {
		t.Fatal("no cases")
	}
	for _, n := range v.Valid {
		if err := CheckArtifactName(n); err != nil {
			t.Fatalf("%q rejected: %v", n, err)
		}
	}
	for _, n := range v.Invalid {
		if err := CheckArtifactName(n); err == nil {
			t.Fatalf("%q accepted", n)
		}
	}
}

func checkIdempotencyKeys(t *testing.T, raw []byte) {
	var v struct {
		Cases []struct {
			Queue     string          `json:"queue"`
			Kind      string          `json:"kind"`
			Payload   json.RawMessage `json:"payload"`
			Canonical string          `json:"canonical_payload"`
			Key       string          `json:"key"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range v.Cases {
		canon, err := CanonicalJSON(c.Payload)
		if err != nil || string(canon) != c.Canonical {
			t.Fatalf("%s/%s: canonical %s %v, want %s", c.Queue, c.Kind, canon, err, c.Canonical)
		}
		key, err := IdempotencyKey(c.Queue, c.Kind, c.Payload)
		if err != nil || key != c.Key {
			t.Fatalf("%s/%s %s: key %s %v, want %s", c.Queue, c.Kind, c.Payload, key, err, c.Key)
		}
	}
}

func u64(t *testing.T, s string) uint64 {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func checkRetrySchedules(t *testing.T, raw []byte) {
	var v struct {
		Algorithm  string `json:"algorithm"`
		SplitMix64 []struct {
			Seed    string   `json:"seed"`
			Outputs []string `json:"outputs"`
		} `json:"splitmix64"`
		Cases []struct {
			Name   string `json:"name"`
			Policy struct {
				InitialMS   int64   `json:"initial_ms"`
				Multiplier  float64 `json:"multiplier"`
				MaxDelayMS  int64   `json:"max_delay_ms"`
				MaxAttempts int     `json:"max_attempts"`
			} `json:"policy"`
			Seed       string   `json:"seed"`
			CeilingsMS []uint64 `json:"ceilings_ms"`
			DelaysMS   []uint64 `json:"delays_ms"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if v.Algorithm != "leasehold-retry-v1" {
		t.Fatalf("algorithm %q", v.Algorithm)
	}
	if len(v.SplitMix64) == 0 || len(v.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, s := range v.SplitMix64 {
		got := SplitMix64(u64(t, s.Seed), len(s.Outputs))
		for i, o := range s.Outputs {
			if got[i] != u64(t, o) {
				t.Fatalf("seed %s output %d: %d, want %s", s.Seed, i, got[i], o)
			}
		}
	}
	for _, c := range v.Cases {
		p := RetryPolicy{
			Initial:     msDuration(c.Policy.InitialMS),
			Multiplier:  c.Policy.Multiplier,
			MaxDelay:    msDuration(c.Policy.MaxDelayMS),
			MaxAttempts: c.Policy.MaxAttempts,
		}
		s, err := RetryScheduleOf(p, u64(t, c.Seed))
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if !slices.Equal(s.CeilingsMS, c.CeilingsMS) || !slices.Equal(s.DelaysMS, c.DelaysMS) || !s.Exhausted {
			t.Fatalf("%s: got %+v, want ceilings %v delays %v", c.Name, s, c.CeilingsMS, c.DelaysMS)
		}
	}
}

func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }
