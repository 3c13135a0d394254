package sim

import (
	"encoding/json"
	"maps"
	"net/http"
	"time"
)

// batchBody is the body of POST /dns_records/batch. Patches and puts carry
// the id of the record they change next to its fields.
type batchBody struct {
	Deletes []struct {
		ID string `json:"id"`
	} `json:"deletes"`
	Patches []map[string]json.RawMessage `json:"patches"`
	Puts    []map[string]json.RawMessage `json:"puts"`
	Posts   []map[string]json.RawMessage `json:"posts"`
}

// recordsBatch answers POST /dns_records/batch: deletes, then patches, then
// puts, then posts, each seeing the ones before, applied all together or,
// when one fails, not at all.
func (s *Server) recordsBatch(r *http.Request, c *call) (any, *resultInfo, error) {
	var body batchBody
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20)).Decode(&body); err != nil {
		return nil, nil, badBody()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UTC()
	work := maps.Clone(c.zone.records)
	out := map[string][]map[string]any{"deletes": {}, "patches": {}, "puts": {}, "posts": {}}
	for _, d := range body.Deletes {
		rec, ok := work[d.ID]
		if !ok {
			return nil, nil, notFound()
		}
		delete(work, d.ID)
		out["deletes"] = append(out["deletes"], rec.wire())
	}
	for _, step := range []struct {
		key     string
		changes []map[string]json.RawMessage
	}{{"patches", body.Patches}, {"puts", body.Puts}} {
		for _, change := range step.changes {
			var id string
			if err := json.Unmarshal(change["id"], &id); err != nil {
				return nil, nil, badBody()
			}
			rec, err := s.replace(work, c.zone.name, id, change, step.key == "patches", now)
			if err != nil {
				return nil, nil, err
			}
			out[step.key] = append(out[step.key], rec.wire())
		}
	}
	for _, post := range body.Posts {
		var rec Record
		if err := decodeRecord(post, &rec); err != nil {
			return nil, nil, err
		}
		rec, err := s.store(work, c.zone.name, rec, nil, now)
		if err != nil {
			return nil, nil, err
		}
		out["posts"] = append(out["posts"], rec.wire())
	}
	c.zone.records = work
	return out, nil, nil
}
