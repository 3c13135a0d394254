package simkit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

func TestNextMatchesOpAndTarget(t *testing.T) {
	tests := []struct {
		name       string
		fault      simkit.Fault
		op, target string
		hit        bool
	}{
		{"any op, any target", simkit.Fault{Status: 500}, "start", "100", true},
		{"same op", simkit.Fault{Op: "start", Status: 500}, "start", "100", true},
		{"other op", simkit.Fault{Op: "stop", Status: 500}, "start", "100", false},
		{"same target", simkit.Fault{Op: "start", Target: "100", Status: 500}, "start", "100", true},
		{"other target", simkit.Fault{Op: "start", Target: "101", Status: 500}, "start", "100", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := simkit.New(1)
			k.Inject(tt.fault)
			if got := k.Next(tt.op, tt.target).Status == 500; got != tt.hit {
				t.Errorf("hit = %v, want %v", got, tt.hit)
			}
		})
	}
}

func TestTimesUsesTheFaultUp(t *testing.T) {
	k := simkit.New(1)
	k.Inject(simkit.Fault{Op: "start", Times: 2, Status: 500}, simkit.Fault{Op: "start", Status: 429})
	var got []int
	for range 4 {
		got = append(got, k.Next("start", "").Status)
	}
	if want := []int{500, 500, 429, 429}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
}

func TestRandomFaultsRepeatWithTheSeed(t *testing.T) {
	draw := func() string {
		k := simkit.New(42)
		k.SetRandomFaults(simkit.RandomFaults{Rate: 0.5})
		var b strings.Builder
		for range 64 {
			if k.Next("x", "").Status == http.StatusServiceUnavailable {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	a, b := draw(), draw()
	if a != b || !strings.Contains(a, "x") || !strings.Contains(a, ".") {
		t.Errorf("draws %s and %s: want the same mix twice", a, b)
	}
}

func TestWaitEndsAHangWhenTheClientGivesUp(t *testing.T) {
	k := simkit.New(1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if k.Wait(ctx, simkit.Fault{Hang: true}) {
		t.Error("Wait answered a hung call")
	}
}

func TestWaitEndsAHangOnClose(t *testing.T) {
	k := simkit.New(1)
	done := make(chan bool)
	go func() { done <- k.Wait(context.Background(), simkit.Fault{Hang: true}) }()
	k.Close()
	select {
	case answered := <-done:
		if answered {
			t.Error("Wait answered a hung call")
		}
	case <-time.After(time.Second):
		t.Fatal("Close did not release the hung call")
	}
}

func TestCallLogCountsByOpAndTarget(t *testing.T) {
	k := simkit.New(1)
	req := httptest.NewRequest("POST", "/x", strings.NewReader("body"))
	for _, target := range []string{"100", "100", "101"} {
		k.Finish(k.Begin(req, "start", target), 200)
	}
	k.Begin(req, "stop", "100")
	if got := [3]int{k.CountCalls("start", "100"), k.CountCalls("start", ""), k.CountCalls("stop", "")}; got != [3]int{2, 3, 1} {
		t.Errorf("counts %v, want [2 3 1]", got)
	}
	if calls := k.Calls(); calls[0].Status != 200 || calls[3].Status != 0 {
		t.Errorf("statuses %d and %d, want 200 and 0 (in flight)", calls[0].Status, calls[3].Status)
	}
	k.ResetCalls()
	if n := len(k.Calls()); n != 0 {
		t.Errorf("%d calls after ResetCalls", n)
	}
}

func TestControlEndpoints(t *testing.T) {
	k := simkit.New(1)
	mux := http.NewServeMux()
	k.Control(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	post := func(path, body string) int {
		res, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := post("/_sim/faults", `{"op":"start","times":1,"status":429,"retryAfter":"3s","latency":"5ms"}`); code != http.StatusNoContent {
		t.Fatalf("POST fault: %d", code)
	}
	if f := k.Next("start", ""); f.Status != 429 || f.RetryAfter != 3*time.Second || f.Latency != 5*time.Millisecond {
		t.Errorf("injected fault %+v", f)
	}
	if code := post("/_sim/faults", `{"op":"vzdump","taskError":"job errors","taskWarning":"skipping disk"}`); code != http.StatusNoContent {
		t.Fatalf("POST task fault: %d", code)
	}
	if f := k.Next("vzdump", "100"); f.TaskError != "job errors" || f.TaskWarning != "skipping disk" {
		t.Errorf("injected task fault %+v", f)
	}
	if code := post("/_sim/faults", `{"op":"start","latency":"soon"}`); code != http.StatusBadRequest {
		t.Errorf("bad duration: %d, want 400", code)
	}
	if code := post("/_sim/random", `{"rate":2}`); code != http.StatusBadRequest {
		t.Errorf("rate 2: %d, want 400", code)
	}
	k.Begin(httptest.NewRequest("GET", "/x", nil), "nodes", "")
	res, err := http.Get(srv.URL + "/_sim/calls")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var calls []simkit.Call
	if err := json.NewDecoder(res.Body).Decode(&calls); err != nil || len(calls) != 1 || calls[0].Op != "nodes" {
		t.Errorf("GET calls: %v %v", calls, err)
	}
}
