package cloudflare

import (
	"context"
	"fmt"
	"strings"

	cf "github.com/cloudflare/cloudflare-go/v6"
	"github.com/cloudflare/cloudflare-go/v6/packages/pagination"
	"github.com/cloudflare/cloudflare-go/v6/zones"
)

// Zone is a zone the token reaches.
type Zone struct {
	// ID is the 32-hex id every record call takes.
	ID string
	// Name is the domain, e.g. example.com.
	Name string
	// Status is Cloudflare's: "active", "pending", "initializing", "moved".
	Status string
	// NameServers are the Cloudflare name servers the domain must delegate
	// to.
	NameServers []string
}

// zonesPerPage is the most zones Cloudflare lists on one page.
const zonesPerPage = 50

// Zones returns every zone the token reaches.
func (c *Client) Zones(ctx context.Context) ([]Zone, error) {
	return c.zones(ctx, "")
}

// ZoneByName returns the zone named name (a trailing dot and case do not
// matter); the error wraps ErrNotFound when the token reaches no such
// zone.
func (c *Client) ZoneByName(ctx context.Context, name string) (Zone, error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	found, err := c.zones(ctx, name)
	if err != nil {
		return Zone{}, err
	}
	for _, z := range found {
		if strings.EqualFold(z.Name, name) {
			return z, nil
		}
	}
	return Zone{}, fmt.Errorf("cloudflare: zone %s: %w", name, ErrNotFound)
}

// zones lists the zones, those named name when it is not empty, page by
// page.
func (c *Client) zones(ctx context.Context, name string) ([]Zone, error) {
	params := zones.ZoneListParams{PerPage: cf.F(float64(zonesPerPage))}
	if name != "" {
		params.Name = cf.F(name)
	}
	out := []Zone{}
	for page := 1; ; page++ {
		params.Page = cf.F(float64(page))
		var res *pagination.V4PagePaginationArray[zones.Zone]
		err := c.call(ctx, "zones.list", func(ctx context.Context) (err error) {
			res, err = c.api.Zones.List(ctx, params)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, z := range res.Result {
			out = append(out, Zone{ID: z.ID, Name: z.Name, Status: string(z.Status), NameServers: z.NameServers})
		}
		if lastPage(len(res.Result), res.ResultInfo.PerPage, zonesPerPage) {
			return out, nil
		}
	}
}

// lastPage reports whether a page of n items was the last. The SDK's
// result_info has no total_pages, and its auto-pager asks for pages after
// the first with context.Background() (the caller could not cancel them)
// and stops only at an empty page, so the pages are walked here: a page
// shorter than the page size is the last.
func lastPage(n int, perPage int64, asked int) bool {
	if perPage <= 0 {
		perPage = int64(asked)
	}
	return n == 0 || int64(n) < perPage
}
