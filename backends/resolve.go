package backends

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// modelDiscoveryTimeout bounds the start-up question "which model do you
// serve?" to a tier without a configured model.
const modelDiscoveryTimeout = 5 * time.Second

// ResolveModels asks every tier without a configured model which model it
// serves (GET /v1/models) and adopts the answer, as the Python router did at
// start-up. Exactly one advertised id is adopted; none or several is a
// configuration error (the router cannot guess). A serve that cannot be
// reached is only a warning: the caller's model string is then forwarded
// as sent. Call it once, before serving.
func (s *Set) ResolveModels(ctx context.Context, log *slog.Logger) error {
	for _, t := range s.tiers {
		if t.Model != "" {
			continue
		}
		ids, err := t.servedModels(ctx)
		switch {
		case err != nil:
			log.Warn("tier has no model and its serve did not say which it serves; forwarding the caller's model", "tier", t.ID, "err", err)
		case len(ids) == 1:
			t.Model = ids[0]
			t.modelJSON, _ = json.Marshal(ids[0])
			if t.prober != nil {
				t.prober.model = ids[0]
			}
			log.Info("tier model taken from its serve", "tier", t.ID, "model", ids[0])
		default:
			return fmt.Errorf("tier %q has no model and its serve advertises %d models: set model in the tier", t.ID, len(ids))
		}
	}
	return nil
}

func (t *Tier) servedModels(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, modelDiscoveryTimeout)
	defer cancel()
	url := strings.TrimSuffix(t.chatURL, "/chat/completions") + "/models"
	if t.Dialect != "openai" {
		url = strings.TrimSuffix(t.chatURL, "/messages") + "/models"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s", transportReason(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&list); err != nil {
		return nil, fmt.Errorf("malformed /v1/models reply")
	}
	ids := make([]string, 0, len(list.Data))
	for _, m := range list.Data {
		if m.ID != "" {
			ids = append(ids, m.ID)
		}
	}
	return ids, nil
}
