package jobs

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/uuid"
)

const testKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes

type secret struct {
	Password string `json:"password"`
}

func TestSealedSecretOpensForItsJob(t *testing.T) {
	s, err := NewSealer(testKey)
	if err != nil {
		t.Fatal(err)
	}
	job := uuid.New()
	sealed, err := s.Seal(job, secret{"hunter2"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("hunter2")) {
		t.Fatal("sealed value holds the plaintext")
	}
	var got secret
	if err := s.Open(job, sealed, &got); err != nil || got.Password != "hunter2" {
		t.Fatalf("Open = %+v, %v", got, err)
	}
}

func TestSealedSecretRefusesOtherJobsAndKeys(t *testing.T) {
	s, _ := NewSealer(testKey)
	other, _ := NewSealer("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=")
	job := uuid.New()
	sealed, _ := s.Seal(job, secret{"hunter2"})
	tests := []struct {
		name   string
		sealer *Sealer
		job    uuid.UUID
		sealed []byte
	}{
		{"another job", s, uuid.New(), sealed},
		{"another key", other, job, sealed},
		{"tampered", s, job, append(append([]byte{}, sealed[:len(sealed)-1]...), sealed[len(sealed)-1]^1)},
		{"truncated", s, job, sealed[:5]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got secret
			if err := tt.sealer.Open(tt.job, tt.sealed, &got); err == nil {
				t.Fatalf("opened: %+v", got)
			}
		})
	}
}

func TestSealerWithoutKeyRefuses(t *testing.T) {
	s, err := NewSealer("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seal(uuid.New(), secret{"x"}); !errors.Is(err, ErrNoSecretsKey) {
		t.Fatalf("Seal = %v, want ErrNoSecretsKey", err)
	}
}

func TestSealerRejectsAShortKey(t *testing.T) {
	if _, err := NewSealer("c2hvcnQ="); err == nil {
		t.Fatal("a 5-byte key was accepted")
	}
}
