package acp

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestStores(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sessions")
	fs, err := newFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	stores := map[string]store{"memory": newMemStore(), "file": fs}
	for name, st := range stores {
		t.Run(name, func(t *testing.T) {
			rec := &record{
				ID: newSessionID(), CWD: "/w", Created: time.Unix(1, 0).UTC(), Updated: time.Unix(2, 0).UTC(), Mode: modeAsk,
				History: []chatMessage{{Role: "user", Content: "hi"}},
				Replay:  []json.RawMessage{json.RawMessage(`{"sessionUpdate":"user_message_chunk","content":{"type":"text","text":"hi"}}`)},
				Always:  map[string]bool{"write_file": true},
			}
			if err := st.save(rec); err != nil {
				t.Fatal(err)
			}
			rec.Mode = modeReadOnly // a later save replaces the record
			if err := st.save(rec); err != nil {
				t.Fatal(err)
			}
			got, err := st.load(rec.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, rec) {
				t.Errorf("loaded %+v, want %+v", got, rec)
			}
			if _, err := st.load(newSessionID()); !errors.Is(err, errNoSession) {
				t.Errorf("unknown id: %v", err)
			}
		})
	}

	t.Run("file survives a new store and leaves no temp files", func(t *testing.T) {
		rec := &record{ID: newSessionID(), CWD: "/w"}
		if err := fs.save(rec); err != nil {
			t.Fatal(err)
		}
		again, err := newFileStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := again.load(rec.ID); err != nil {
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if filepath.Ext(e.Name()) != ".json" {
				t.Errorf("left behind: %s", e.Name())
			}
			if info, _ := e.Info(); info.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600 (it holds the conversation)", e.Name(), info.Mode().Perm())
			}
		}
	})
	t.Run("file refuses ids that could name another file", func(t *testing.T) {
		for _, id := range []string{"../x", "sess_../../etc", "", "sess_ABC"} {
			if _, err := fs.load(id); !errors.Is(err, errNoSession) {
				t.Errorf("load(%q): %v", id, err)
			}
			if err := fs.save(&record{ID: id}); err == nil {
				t.Errorf("save(%q) succeeded", id)
			}
		}
	})
	t.Run("damaged file is an error, not an empty session", func(t *testing.T) {
		id := newSessionID()
		os.WriteFile(filepath.Join(dir, id+".json"), []byte("{half"), 0o600)
		if _, err := fs.load(id); err == nil || errors.Is(err, errNoSession) {
			t.Errorf("damaged: %v", err)
		}
	})
}
