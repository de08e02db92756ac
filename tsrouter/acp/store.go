package acp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"
)

// record is what a session keeps between turns and, with file storage,
// across restarts of the agent: the conversation sent to the model and the
// session/update payloads that replay it to an editor on session/load.
type record struct {
	ID      string            `json:"id"`
	CWD     string            `json:"cwd"`
	Created time.Time         `json:"created"`
	Updated time.Time         `json:"updated"`
	Mode    string            `json:"mode,omitempty"`
	History []chatMessage     `json:"history"`
	Replay  []json.RawMessage `json:"replay"`
	// Always holds the "always" answers of the session, by tool name.
	Always map[string]bool `json:"always,omitempty"`
}

// store keeps session records.
type store interface {
	save(r *record) error
	load(id string) (*record, error)
}

var errNoSession = errors.New("no such session")

// sessionIDPattern is the shape of the ids this agent hands out; anything
// else is refused before it can name a file.
var sessionIDPattern = regexp.MustCompile(`^sess_[0-9a-f]{32}$`)

// memStore keeps records for the life of the process.
type memStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newMemStore() *memStore { return &memStore{m: map[string][]byte{}} }

func (s *memStore) save(r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[r.ID] = b
	return nil
}

func (s *memStore) load(id string) (*record, error) {
	s.mu.Lock()
	b, ok := s.m[id]
	s.mu.Unlock()
	if !ok {
		return nil, errNoSession
	}
	var r record
	return &r, json.Unmarshal(b, &r)
}

// fileStore keeps one JSON file per session in dir, written atomically
// (temporary file, fsync, rename) so a crash leaves the old or the new
// record, never half of one. Files are private to the user: they hold
// the conversation.
type fileStore struct {
	dir string
	mu  sync.Mutex
}

func newFileStore(dir string) (*fileStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("session storage: %w", err)
	}
	return &fileStore{dir: dir}, nil
}

func (s *fileStore) path(id string) (string, error) {
	if !sessionIDPattern.MatchString(id) {
		return "", errNoSession
	}
	return filepath.Join(s.dir, id+".json"), nil
}

func (s *fileStore) save(r *record) error {
	p, err := s.path(r.ID)
	if err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tmp, err := os.CreateTemp(s.dir, ".tmp-"+r.ID+"-*")
	if err != nil {
		return fmt.Errorf("session storage: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("session storage: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("session storage: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("session storage: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("session storage: %w", err)
	}
	return nil
}

func (s *fileStore) load(id string) (*record, error) {
	p, err := s.path(id)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("session storage: %w", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("session storage: %s is damaged: %w", filepath.Base(p), err)
	}
	return &r, nil
}
