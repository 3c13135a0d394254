// Package simkit holds what every provider simulator shares: scripted and
// seeded random faults, the log of calls that arrived, the /_sim/ control
// endpoints over both, and the low-level answers a fault needs (a dropped
// connection, a custom status line).
package simkit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Fault is a scripted misbehaviour for calls matching Op and Target.
type Fault struct {
	// Op is the operation name as in Call.Op ("start", "records.create",
	// ...); empty matches every operation.
	Op string `json:"op,omitempty"`
	// Target limits the fault to one object (a VMID, a server id, a zone);
	// empty matches any.
	Target string `json:"target,omitempty"`
	// Times is how many matching calls the fault hits; zero or less means
	// every one until ClearFaults.
	Times int `json:"times,omitempty"`

	// Latency delays the answer.
	Latency time.Duration `json:"-"`
	// Status, when 400 or more, refuses the call with that status before it
	// is carried out; Message (default the status text) says why, in the
	// provider's error shape.
	Status  int    `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	// RetryAfter is sent as a Retry-After header with Status.
	RetryAfter time.Duration `json:"-"`
	// Drop carries the request out, then closes the connection halfway
	// through the answer: the client cannot know whether it happened.
	Drop bool `json:"drop,omitempty"`
	// Hang never answers; the request ends when the client gives up.
	Hang bool `json:"hang,omitempty"`
	// TaskError makes the long-running task the call starts (a Proxmox
	// UPID, an install, a reinstall) end in this error instead of success,
	// without the change it would have made.
	TaskError string `json:"taskError,omitempty"`
	// TaskWarning makes the long-running task the call starts print this
	// warning: it makes its change as usual and ends in success with a
	// warning (a Proxmox task: a "WARN: " line in its log and exit status
	// "WARNINGS: 1", which pve-common counts as success). TaskError wins
	// over it. Simulators whose tasks cannot warn ignore it; so far only
	// the Proxmox one honours it.
	TaskWarning string `json:"taskWarning,omitempty"`
}

// RandomFaults fail a share of all calls, drawn from the seeded source.
type RandomFaults struct {
	// Rate is the share of calls hit, 0 to 1.
	Rate float64
	// Status is the answer of a hit call; default 503.
	Status int
	// Latency delays every call hit.
	Latency time.Duration
}

// Call is one request as it arrived.
type Call struct {
	Time   time.Time `json:"time"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	// Op names the operation: "start", "status.current", "records.create"...
	Op string `json:"op"`
	// Target is the object the call was about, when it names one.
	Target string `json:"target,omitempty"`
	// Status is the HTTP status answered; 0 while in flight or when the
	// client gave up first.
	Status int `json:"status"`
}

// Kit keeps one simulator's faults and call log. Its methods are safe for
// concurrent use.
type Kit struct {
	done chan struct{}

	mu     sync.Mutex
	closed bool
	faults []*Fault
	random RandomFaults
	rng    *rand.Rand
	calls  []Call
}

// New returns a Kit whose random faults draw from seed.
func New(seed uint64) *Kit {
	return &Kit{done: make(chan struct{}), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Close releases every hung or delayed call.
func (k *Kit) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closed {
		k.closed = true
		close(k.done)
	}
}

// Done is closed by Close.
func (k *Kit) Done() <-chan struct{} { return k.done }

// Inject adds scripted faults; they are matched in the order added.
func (k *Kit) Inject(faults ...Fault) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, f := range faults {
		k.faults = append(k.faults, &f)
	}
}

// ClearFaults removes every scripted and random fault.
func (k *Kit) ClearFaults() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.faults = nil
	k.random = RandomFaults{}
}

// SetRandomFaults replaces the random fault settings.
func (k *Kit) SetRandomFaults(rf RandomFaults) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.random = rf
}

// Next returns what should go wrong with a call of op on target: the first
// matching scripted fault (used up by Times), else possibly a random one,
// else the zero Fault.
func (k *Kit) Next(op, target string) Fault {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, f := range k.faults {
		if (f.Op != "" && f.Op != op) || (f.Target != "" && f.Target != target) {
			continue
		}
		hit := *f
		if f.Times > 0 {
			if f.Times--; f.Times == 0 {
				k.faults = slices.Delete(k.faults, i, i+1)
			}
		}
		return hit
	}
	if rf := k.random; rf.Rate > 0 && k.rng.Float64() < rf.Rate {
		status := rf.Status
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		return Fault{Status: status, Latency: rf.Latency}
	}
	return Fault{}
}

// Wait carries out the fault's latency and hang. It returns false when the
// call must not be answered: it hung, or the client gave up while waiting.
func (k *Kit) Wait(ctx context.Context, f Fault) bool {
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		case <-k.done:
		}
	}
	if f.Hang {
		select {
		case <-ctx.Done():
		case <-k.done:
		}
		return false
	}
	return true
}

// maxBody bounds the request body Begin buffers.
const maxBody = 8 << 20

// Begin logs a call as it arrives and returns its index for Finish. It
// reads the request body into memory first: net/http only notices a client
// that hung up once the body has been read, and a hung or delayed call must
// end when its client gives up.
func (k *Kit) Begin(r *http.Request, op, target string) int {
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(b))
		if err != nil {
			r.Body = io.NopCloser(errReader{err})
		}
	}
	return k.Record(r.Method, r.URL.Path, op, target)
}

// Record logs a call that did not come over HTTP (a command over SSH) and
// returns its index for Finish.
func (k *Kit) Record(method, path, op, target string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, Call{Time: time.Now(), Method: method, Path: path, Op: op, Target: target})
	return len(k.calls) - 1
}

// SetTarget records the object a logged call turned out to be about.
func (k *Kit) SetTarget(idx int, target string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if idx < len(k.calls) {
		k.calls[idx].Target = target
	}
}

// errReader hands a failed body read on to the handler.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// Finish records the status a logged call was answered with.
func (k *Kit) Finish(idx, status int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if idx < len(k.calls) {
		k.calls[idx].Status = status
	}
}

// Calls returns the calls that arrived, oldest first.
func (k *Kit) Calls() []Call {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.calls)
}

// CountCalls counts the calls of op that arrived for target (any when
// empty), whatever their answer.
func (k *Kit) CountCalls(op, target string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, c := range k.calls {
		if c.Op == op && (target == "" || c.Target == target) {
			n++
		}
	}
	return n
}

// ResetCalls empties the call log. Calls in flight are forgotten too.
func (k *Kit) ResetCalls() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = nil
}

// faultJSON is a Fault on the control endpoint, with durations as Go
// duration strings ("250ms") so that curl users can write them.
type faultJSON struct {
	Fault
	Latency    string  `json:"latency"`
	RetryAfter string  `json:"retryAfter"`
	Rate       float64 `json:"rate"`
}

func (f faultJSON) durations() (latency, retryAfter time.Duration, err error) {
	parse := func(v string) (time.Duration, error) {
		if v == "" {
			return 0, nil
		}
		return time.ParseDuration(v)
	}
	if latency, err = parse(f.Latency); err == nil {
		retryAfter, err = parse(f.RetryAfter)
	}
	return latency, retryAfter, err
}

// Control registers the control endpoints on mux, without authentication:
//
//	GET    /_sim/calls    the call log as JSON
//	DELETE /_sim/calls    empty it
//	POST   /_sim/faults   add a fault: {"op","target","times","latency":"250ms","status","message","retryAfter":"5s","drop","hang","taskError","taskWarning"}
//	DELETE /_sim/faults   remove every fault
//	POST   /_sim/random   {"rate":0.1,"status":503,"latency":"100ms"}
func (k *Kit) Control(mux *http.ServeMux) {
	mux.HandleFunc("GET /_sim/calls", func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, http.StatusOK, k.Calls()) })
	mux.HandleFunc("DELETE /_sim/calls", func(w http.ResponseWriter, r *http.Request) {
		k.ResetCalls()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		var f faultJSON
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			http.Error(w, "bad fault: "+err.Error(), http.StatusBadRequest)
			return
		}
		var err error
		if f.Fault.Latency, f.Fault.RetryAfter, err = f.durations(); err != nil {
			http.Error(w, fmt.Sprintf("bad duration: %v", err), http.StatusBadRequest)
			return
		}
		k.Inject(f.Fault)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		k.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_sim/random", func(w http.ResponseWriter, r *http.Request) {
		var f faultJSON
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil || f.Rate < 0 || f.Rate > 1 {
			http.Error(w, `want {"rate":0.1,"status":503,"latency":"100ms"}`, http.StatusBadRequest)
			return
		}
		latency, _, err := f.durations()
		if err != nil {
			http.Error(w, fmt.Sprintf("bad duration: %v", err), http.StatusBadRequest)
			return
		}
		k.SetRandomFaults(RandomFaults{Rate: f.Rate, Status: f.Status, Latency: latency})
		w.WriteHeader(http.StatusNoContent)
	})
}

// WriteJSON writes v as a JSON answer.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// WriteStatusLine answers with a status line of its own reason phrase, as
// pveproxy does ("500 VM 100 not running"), then closes the connection.
// Without a hijackable connection (httptest.ResponseRecorder) it falls back
// to the standard reason.
func WriteStatusLine(w http.ResponseWriter, status int, reason string, hdr http.Header, body []byte) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		for k, v := range hdr {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		w.Write(body)
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	hdr = hdr.Clone()
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	hdr.Set("Connection", "close")
	writeRaw(buf.Writer, status, reason, hdr, body)
}

// DropMidResponse sends the headers of a 200 answer and half its body, then
// closes the connection.
func DropMidResponse(w http.ResponseWriter, hdr http.Header, body []byte) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	hdr = hdr.Clone()
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	writeRaw(buf.Writer, http.StatusOK, "OK", hdr, body[:len(body)/2])
}

func writeRaw(bw *bufio.Writer, status int, reason string, hdr http.Header, body []byte) {
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\n", status, reason)
	hdr.Write(bw)
	bw.WriteString("\r\n")
	bw.Write(body)
	bw.Flush()
}

// RetryAfterSeconds formats d for a Retry-After header, rounding up.
func RetryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(int((d + time.Second - 1) / time.Second))
}
