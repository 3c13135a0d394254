package cloudflare

import (
	"context"
	"fmt"
	"time"

	cf "github.com/cloudflare/cloudflare-go/v6"
	"github.com/cloudflare/cloudflare-go/v6/dns"
	"github.com/cloudflare/cloudflare-go/v6/packages/pagination"

	"github.com/hostfleet/provisiond/adapters/failure"
)

// The record types this package handles.
const (
	TypeA     = "A"
	TypeAAAA  = "AAAA"
	TypeCNAME = "CNAME"
	TypeTXT   = "TXT"
	TypeMX    = "MX"
	TypeSRV   = "SRV"
)

// TTLAuto is the TTL that leaves it to Cloudflare (300s; always so for a
// proxied record).
const TTLAuto = 1

// NewRecord is a record to create, or what a record is replaced by.
type NewRecord struct {
	// Type is one of TypeA, TypeAAAA, TypeCNAME, TypeTXT, TypeMX, TypeSRV.
	Type string
	// Name is the full name ("www.example.com"), or one relative to the
	// zone ("www", "@" for the apex), which Cloudflare completes.
	Name string
	// Content is the address, the target host name or the text; unused
	// for SRV, whose value is SRV.
	Content string
	// TTL is in seconds, 60 to 86400, or TTLAuto; 0 means TTLAuto.
	TTL int
	// Proxied sends the traffic through Cloudflare; only A, AAAA and CNAME
	// records can be.
	Proxied bool
	// Comment is a note kept with the record; it does not reach DNS.
	Comment string
	// Priority is an MX record's preference, lower preferred.
	Priority uint16
	// SRV is an SRV record's value, required for one.
	SRV *SRV
}

// SRV is the value of an SRV record.
type SRV struct {
	Priority uint16
	Weight   uint16
	Port     uint16
	// Target is the host name offering the service.
	Target string
}

// Record is a DNS record as Cloudflare keeps it.
type Record struct {
	// ID is the record's 32-hex id.
	ID string
	// Type, Name (always the full name), TTL, Proxied, Comment, Priority
	// and SRV are as in NewRecord; an SRV record's Content is Cloudflare's
	// "priority weight port target".
	NewRecord
	// Proxiable says whether Cloudflare could proxy the record.
	Proxiable bool
	// CreatedOn and ModifiedOn are Cloudflare's times.
	CreatedOn, ModifiedOn time.Time
}

// RecordFilter selects records; an empty field selects all.
type RecordFilter struct {
	// Type is a record type, e.g. TypeSRV.
	Type string
	// Name is a full record name, matched exactly without regard to case.
	Name string
}

// recordsPerPage is the page size of a listing: Cloudflare's default and
// a size every plan allows.
const recordsPerPage = 100

// Records returns the zone's records that filter selects, all pages of
// them. The pages are read one after the other, so a record changed
// meanwhile may be missed or seen twice.
func (c *Client) Records(ctx context.Context, zoneID string, filter RecordFilter) ([]Record, error) {
	params := dns.RecordListParams{ZoneID: cf.F(zoneID), PerPage: cf.F(float64(recordsPerPage))}
	if filter.Type != "" {
		params.Type = cf.F(dns.RecordListParamsType(filter.Type))
	}
	if filter.Name != "" {
		params.Name = cf.F(dns.RecordListParamsName{Exact: cf.F(filter.Name)})
	}
	out := []Record{}
	for page := 1; ; page++ {
		params.Page = cf.F(float64(page))
		var res *pagination.V4PagePaginationArray[dns.RecordResponse]
		err := c.call(ctx, "records.list", func(ctx context.Context) (err error) {
			res, err = c.api.DNS.Records.List(ctx, params)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, r := range res.Result {
			out = append(out, recordFrom(r))
		}
		if lastPage(len(res.Result), res.ResultInfo.PerPage, recordsPerPage) {
			return out, nil
		}
	}
}

// CreateRecord creates a record in the zone.
func (c *Client) CreateRecord(ctx context.Context, zoneID string, rec NewRecord) (Record, error) {
	const op = "records.create"
	body, err := rec.body()
	if err != nil {
		return Record{}, refused(op, err)
	}
	var res *dns.RecordResponse
	err = c.call(ctx, op, func(ctx context.Context) (err error) {
		res, err = c.api.DNS.Records.New(ctx, dns.RecordNewParams{ZoneID: cf.F(zoneID), Body: body})
		return err
	})
	if err != nil {
		return Record{}, err
	}
	return recordFrom(*res), nil
}

// UpdateRecord replaces a record as a whole (PUT): what rec leaves out,
// the comment say, goes back to its default. Its error wraps ErrNotFound
// when the record is gone.
func (c *Client) UpdateRecord(ctx context.Context, zoneID, recordID string, rec NewRecord) (Record, error) {
	const op = "records.update"
	body, err := rec.body()
	if err != nil {
		return Record{}, refused(op, err)
	}
	var res *dns.RecordResponse
	err = c.call(ctx, op, func(ctx context.Context) (err error) {
		res, err = c.api.DNS.Records.Update(ctx, recordID, dns.RecordUpdateParams{ZoneID: cf.F(zoneID), Body: body})
		return err
	})
	if err != nil {
		return Record{}, err
	}
	return recordFrom(*res), nil
}

// DeleteRecord deletes a record. Its error wraps ErrNotFound when the
// record is gone already, which a caller deleting it may take as done.
func (c *Client) DeleteRecord(ctx context.Context, zoneID, recordID string) error {
	return c.call(ctx, "records.delete", func(ctx context.Context) error {
		_, err := c.api.DNS.Records.Delete(ctx, recordID, dns.RecordDeleteParams{ZoneID: cf.F(zoneID)})
		return err
	})
}

// refused is the permanent failure of a record this package cannot send.
func refused(op string, err error) error {
	return &failure.Error{Class: failure.Permanent, Provider: Provider, Op: op, Message: err.Error(), Err: err}
}

// recordBody is a record parameter the SDK takes both to create and to
// replace a record: each of its per-type params (dns.ARecordParam, ...)
// is both unions.
type recordBody interface {
	dns.RecordNewParamsBodyUnion
	dns.RecordUpdateParamsBodyUnion
}

// body builds the SDK's parameter for rec. The SDK has one struct per
// record type, with the type again as a typed constant, so there is one
// case per type here.
func (rec NewRecord) body() (recordBody, error) {
	ttl := dns.TTL(rec.TTL)
	if rec.TTL == 0 {
		ttl = dns.TTL1
	}
	name, content, proxied, comment := cf.F(rec.Name), cf.F(rec.Content), cf.F(rec.Proxied), cf.F(rec.Comment)
	switch rec.Type {
	case TypeA:
		return dns.ARecordParam{Type: cf.F(dns.ARecordTypeA), Name: name, Content: content, TTL: cf.F(ttl),
			Proxied: proxied, Comment: comment}, nil
	case TypeAAAA:
		return dns.AAAARecordParam{Type: cf.F(dns.AAAARecordTypeAAAA), Name: name, Content: content, TTL: cf.F(ttl),
			Proxied: proxied, Comment: comment}, nil
	case TypeCNAME:
		return dns.CNAMERecordParam{Type: cf.F(dns.CNAMERecordTypeCNAME), Name: name, Content: content, TTL: cf.F(ttl),
			Proxied: proxied, Comment: comment}, nil
	case TypeTXT:
		return dns.TXTRecordParam{Type: cf.F(dns.TXTRecordTypeTXT), Name: name, Content: content, TTL: cf.F(ttl),
			Proxied: proxied, Comment: comment}, nil
	case TypeMX:
		return dns.MXRecordParam{Type: cf.F(dns.MXRecordTypeMX), Name: name, Content: content, TTL: cf.F(ttl),
			Priority: cf.F(float64(rec.Priority)), Proxied: proxied, Comment: comment}, nil
	case TypeSRV:
		if rec.SRV == nil {
			return nil, fmt.Errorf("an SRV record needs its priority, weight, port and target")
		}
		return dns.SRVRecordParam{Type: cf.F(dns.SRVRecordTypeSRV), Name: name, TTL: cf.F(ttl),
			Data: cf.F(dns.SRVRecordDataParam{Priority: cf.F(float64(rec.SRV.Priority)), Weight: cf.F(float64(rec.SRV.Weight)),
				Port: cf.F(float64(rec.SRV.Port)), Target: cf.F(rec.SRV.Target)}),
			Proxied: proxied, Comment: comment}, nil
	}
	return nil, fmt.Errorf("record type %q is not supported (A, AAAA, CNAME, TXT, MX, SRV are)", rec.Type)
}

// recordFrom reads the SDK's record. Its numbers are float64 and an SRV
// record's data an interface{}, reached through the type's own struct.
func recordFrom(r dns.RecordResponse) Record {
	rec := Record{ID: r.ID, Proxiable: r.Proxiable, CreatedOn: r.CreatedOn, ModifiedOn: r.ModifiedOn,
		NewRecord: NewRecord{Type: string(r.Type), Name: r.Name, Content: r.Content, TTL: int(r.TTL),
			Proxied: r.Proxied, Comment: r.Comment}}
	switch rec.Type {
	case TypeMX:
		rec.Priority = uint16(r.Priority)
	case TypeSRV:
		if srv, ok := r.AsUnion().(dns.RecordResponseSRV); ok {
			rec.SRV = &SRV{Priority: uint16(srv.Data.Priority), Weight: uint16(srv.Data.Weight),
				Port: uint16(srv.Data.Port), Target: srv.Data.Target}
		}
	}
	return rec
}
