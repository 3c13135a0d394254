package jobs

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// Sealer encrypts a job's secrets (a root password, a rescue password) for
// the jobs.sealed_secrets column, with AES-256-GCM bound to the job's id, so
// that neither the database nor Redis ever holds them in plaintext and a
// sealed value copied onto another job does not open.
type Sealer struct {
	aead cipher.AEAD
}

// sealVersion leads every sealed value, so that a later key rotation can
// tell old values from new ones.
const sealVersion = 1

// ErrNoSecretsKey says that secrets were given but no key is configured.
var ErrNoSecretsKey = errors.New("SECRETS_KEY is not set: jobs with secrets cannot be created or run")

// NewSealer returns a Sealer for a base64-encoded 32-byte key. An empty key
// gives a Sealer that refuses to seal or open (ErrNoSecretsKey), so that a
// process which never handles secrets needs no key.
func NewSealer(key string) (*Sealer, error) {
	if key == "" {
		return &Sealer{}, nil
	}
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(raw) != 32 {
		return nil, errors.New("SECRETS_KEY must be 32 bytes, base64-encoded (openssl rand -base64 32)")
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts v, encoded as JSON, for the job.
func (s *Sealer) Seal(job uuid.UUID, v any) ([]byte, error) {
	if s.aead == nil {
		return nil, ErrNoSecretsKey
	}
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1:])
	return s.aead.Seal(out, out[1:], plain, job[:]), nil
}

// Open decrypts what Seal made for the job into v.
func (s *Sealer) Open(job uuid.UUID, sealed []byte, v any) error {
	if s.aead == nil {
		return ErrNoSecretsKey
	}
	n := s.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != sealVersion {
		return errors.New("open sealed secrets: unknown format")
	}
	plain, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], job[:])
	if err != nil {
		return errors.New("open sealed secrets: wrong key or not this job's")
	}
	return json.Unmarshal(plain, v)
}
