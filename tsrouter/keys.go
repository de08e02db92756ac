package tsrouter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/state"
)

// KeyRing holds the API keys in force and reloads them. Requests read the
// current set through an atomic pointer; reloads build a whole new set
// and swap it in, or keep the old one and say why.
type KeyRing struct {
	mode      atomic.Value // policy.KeyMode, read on every request
	cfg       policy.KeyConfig
	storePath string
	tierIDs   []string
	lookup    func(string) (string, bool)
	log       *slog.Logger

	set     atomic.Pointer[policy.KeySet]
	mu      sync.Mutex // serializes reloads and admin mutations
	runtime []policy.APIKey
	// revoked are the keys the ring knew that are no longer in force
	// (rotated away, deleted, removed from the config or the key file),
	// refused in every mode; kept beside the store.
	revoked []policy.Revoked
	stamps  [2]time.Time // mtimes of the key file and the store
}

// NewKeyRing loads the keys of cfg: inline tables, api_keys_file and the
// runtime store at storePath. Any problem at start-up is an error: the
// router must not start with keys silently missing.
func NewKeyRing(cfg policy.KeyConfig, storePath string, tierIDs []string, lookup func(string) (string, bool), log *slog.Logger) (*KeyRing, error) {
	mode, err := policy.ParseKeyMode(cfg.Mode)
	if err != nil {
		return nil, err
	}
	k := &KeyRing{cfg: cfg, storePath: storePath, tierIDs: tierIDs, lookup: lookup, log: log}
	k.mode.Store(mode)
	if err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Mode is the authentication mode.
func (k *KeyRing) Mode() policy.KeyMode { return k.mode.Load().(policy.KeyMode) }

// UpdateConfig applies a re-read [api_keys] section (mode, inline keys,
// key file) without a restart. If the new keys do not load, the previous
// section and keys stay in force.
func (k *KeyRing) UpdateConfig(cfg policy.KeyConfig) error {
	mode, err := policy.ParseKeyMode(cfg.Mode)
	if err != nil {
		return err
	}
	k.mu.Lock()
	oldCfg := k.cfg
	k.cfg = cfg
	k.mu.Unlock()
	if err := k.Reload(); err != nil {
		k.mu.Lock()
		k.cfg = oldCfg
		k.mu.Unlock()
		return err
	}
	k.mode.Store(mode)
	return nil
}

// Set is the key set in force.
func (k *KeyRing) Set() *policy.KeySet { return k.set.Load() }

// Reload re-reads the key file and the runtime store (inline keys are
// fixed until the config is reloaded) and swaps in the new set. On error
// the old set stays in force.
func (k *KeyRing) Reload() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var keys []policy.APIKey
	inline, err := policy.KeysFromRecords(k.cfg.Inline, policy.SourceConfig, "api_keys.api_keys", k.lookup)
	if err != nil {
		return fmt.Errorf("[api_keys] inline keys: %w", err)
	}
	keys = append(keys, inline...)
	if k.cfg.File != "" {
		data, err := os.ReadFile(k.cfg.File)
		if err != nil {
			return fmt.Errorf("api_keys_file: %w", err)
		}
		fileKeys, err := policy.ParseKeysFile(data, k.lookup)
		if err != nil {
			return fmt.Errorf("api_keys_file %s: %w", k.cfg.File, err)
		}
		keys = append(keys, fileKeys...)
	}
	runtime, err := state.LoadKeyStore(k.storePath)
	if err != nil {
		return err
	}
	keys = append(keys, runtime...)
	set, warnings, err := policy.NewKeySet(keys, k.tierIDs)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		k.log.Warn("api keys: " + w)
	}
	revoked := k.revoked
	if revoked == nil {
		if revoked, err = state.LoadRevoked(state.RevokedPath(k.storePath)); err != nil {
			return err
		}
	}
	if old := k.set.Load(); old != nil {
		if gone := revokedBetween(old.Keys(), keys); len(gone) > 0 {
			revoked = append(revoked, gone...)
			if err := state.SaveRevoked(state.RevokedPath(k.storePath), revoked, time.Now()); err != nil {
				return fmt.Errorf("%w: %w", ErrKeyStoreWrite, err)
			}
		}
	}
	k.revoked = state.PruneRevoked(revoked, time.Now())
	k.runtime = runtime
	k.stamps = [2]time.Time{modTime(k.cfg.File), modTime(k.storePath)}
	k.set.Store(set.WithRevoked(revoked))
	return nil
}

// revokedBetween lists the keys of before whose secret is not in after:
// each stays refused until the key would have expired.
func revokedBetween(before, after []policy.APIKey) []policy.Revoked {
	var out []policy.Revoked
	for _, b := range before {
		if !slices.ContainsFunc(after, func(a policy.APIKey) bool { return a.Digest == b.Digest }) {
			out = append(out, policy.Revoked{Digest: b.Digest, Until: b.ExpiresAt})
		}
	}
	return out
}

// BackendIDs lists every id an API key's allowed_backends may name: chat
// tiers, purpose models and audio routes, which share one namespace.
func BackendIDs(cfg backends.Config) []string {
	var ids []string
	for _, t := range cfg.Tiers {
		ids = append(ids, t.ID)
	}
	for _, pm := range cfg.PurposeModels {
		ids = append(ids, pm.ID)
	}
	for _, ar := range cfg.AudioRoutes {
		ids = append(ids, ar.ID)
	}
	return ids
}

// Watch reloads when the key file or the store changes on disk (checked
// every interval) until ctx ends. A bad file keeps the old keys.
func (k *KeyRing) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k.mu.Lock()
		changed := modTime(k.cfg.File) != k.stamps[0] || modTime(k.storePath) != k.stamps[1]
		k.mu.Unlock()
		if changed {
			k.ReloadAndLog("file changed")
		}
	}
}

// ReloadAndLog reloads (on SIGHUP or a file change) and logs the outcome.
func (k *KeyRing) ReloadAndLog(why string) {
	if err := k.Reload(); err != nil {
		k.log.Error("api keys not reloaded; the previous keys stay in force", "why", why, "err", err)
		return
	}
	k.log.Info("api keys reloaded", "why", why, "keys", k.Set().Len())
}

func modTime(path string) time.Time {
	if path == "" {
		return time.Time{}
	}
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

// Errors of key administration, mapped to statuses by the admin API.
var (
	ErrKeyNotFound = errors.New("api key not found")
	ErrKeyExists   = errors.New("an api key with this id exists")
	ErrKeyReadOnly = errors.New("this api key comes from the config or api_keys_file; change it there")
	// ErrKeyStoreWrite wraps a failure to persist the runtime keys: the
	// server's fault, not the request's. Its text names the store's path,
	// so it is for the log only.
	ErrKeyStoreWrite = errors.New("saving the key store")
)

// Keys returns every key (config, file and runtime), for listing.
func (k *KeyRing) Keys() []policy.APIKey { return k.Set().Keys() }

// Get returns one key.
func (k *KeyRing) Get(id string) (policy.APIKey, bool) {
	key, ok := k.Set().Get(id)
	if !ok {
		return policy.APIKey{}, false
	}
	return *key, true
}

// mutateRuntime applies fn to the runtime keys, persists them (digests
// only, atomically) and swaps in the new set — all or nothing.
func (k *KeyRing) mutateRuntime(fn func(runtime []policy.APIKey) ([]policy.APIKey, error)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	next, err := fn(append([]policy.APIKey(nil), k.runtime...))
	if err != nil {
		return err
	}
	var all []policy.APIKey
	for _, key := range k.Set().Keys() {
		if key.Source != policy.SourceRuntime {
			all = append(all, key)
		}
	}
	all = append(all, next...)
	set, _, err := policy.NewKeySet(all, k.tierIDs)
	if err != nil {
		return err
	}
	// Revocations are written first: a crash in between leaves a key
	// both stored and revoked, and a stored key is still honoured.
	revoked := k.revoked
	if gone := revokedBetween(k.runtime, next); len(gone) > 0 {
		revoked = append(slices.Clip(revoked), gone...)
		if err := state.SaveRevoked(state.RevokedPath(k.storePath), revoked, time.Now()); err != nil {
			return fmt.Errorf("%w: %w", ErrKeyStoreWrite, err)
		}
	}
	if err := state.SaveKeyStore(k.storePath, next); err != nil {
		return fmt.Errorf("%w: %w", ErrKeyStoreWrite, err)
	}
	k.revoked = state.PruneRevoked(revoked, time.Now())
	k.runtime = next
	k.stamps[1] = modTime(k.storePath)
	k.set.Store(set.WithRevoked(revoked))
	return nil
}

// Create adds a runtime key with a new secret, which is returned once and
// never stored.
func (k *KeyRing) Create(key policy.APIKey) (policy.APIKey, string, error) {
	secret, err := policy.NewSecret()
	if err != nil {
		return policy.APIKey{}, "", err
	}
	key.SetSecret(secret)
	key.Source = policy.SourceRuntime
	if key.CreatedAt.IsZero() {
		key.CreatedAt = time.Now().UTC()
	}
	err = k.mutateRuntime(func(rt []policy.APIKey) ([]policy.APIKey, error) {
		if _, exists := k.Set().Get(key.ID); exists {
			return nil, ErrKeyExists
		}
		return append(rt, key), nil
	})
	if err != nil {
		return policy.APIKey{}, "", err
	}
	return key, secret, nil
}

// Update changes a runtime key (rotate replaces its secret and returns
// the new one; other changes return "").
func (k *KeyRing) Update(id string, change func(*policy.APIKey) error, rotate bool) (policy.APIKey, string, error) {
	var out policy.APIKey
	var secret string
	err := k.mutateRuntime(func(rt []policy.APIKey) ([]policy.APIKey, error) {
		i := runtimeIndex(rt, id)
		if i < 0 {
			if _, ok := k.Set().Get(id); ok {
				return nil, ErrKeyReadOnly
			}
			return nil, ErrKeyNotFound
		}
		key := rt[i]
		if change != nil {
			if err := change(&key); err != nil {
				return nil, err
			}
		}
		if rotate {
			s, err := policy.NewSecret()
			if err != nil {
				return nil, err
			}
			secret = s
			key.SetSecret(s)
		}
		rt[i], out = key, key
		return rt, nil
	})
	return out, secret, err
}

// Delete removes a runtime key.
func (k *KeyRing) Delete(id string) error {
	return k.mutateRuntime(func(rt []policy.APIKey) ([]policy.APIKey, error) {
		i := runtimeIndex(rt, id)
		if i < 0 {
			if _, ok := k.Set().Get(id); ok {
				return nil, ErrKeyReadOnly
			}
			return nil, ErrKeyNotFound
		}
		return append(rt[:i], rt[i+1:]...), nil
	})
}

func runtimeIndex(rt []policy.APIKey, id string) int {
	for i := range rt {
		if rt[i].ID == id {
			return i
		}
	}
	return -1
}
