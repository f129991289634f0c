package service_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	"github.com/holdfast/holdfast/service"
	"github.com/holdfast/holdfast/sqlite"
	"github.com/holdfast/holdfast/webhook"
	"github.com/holdfast/holdfast/webhook/signature"
)

// step is a service that records its starts and stops; fail makes its
// Start fail.
type step struct {
	name string
	log  *[]string
	fail bool
}

func (s step) Start(context.Context) error {
	if s.fail {
		return errors.New(s.name + " cannot start")
	}
	*s.log = append(*s.log, "start "+s.name)
	return nil
}

func (s step) Stop(context.Context) error {
	*s.log = append(*s.log, "stop "+s.name)
	return nil
}

func TestRunnerStartsInOrderAndStopsInReverse(t *testing.T) {
	ctx := context.Background()
	var log []string
	r := service.NewRunner(step{"a", &log, false}, step{"b", &log, false})
	r.Add(step{"c", &log, false})
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err == nil {
		t.Fatal("a runner started twice")
	}
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(ctx); err != nil { // stopped already: nothing more
		t.Fatal(err)
	}
	want := []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"}
	if !slices.Equal(log, want) {
		t.Fatalf("lifecycle %q, want %q", log, want)
	}
}

func TestRunnerStopsWhatStartedWhenOneFails(t *testing.T) {
	var log []string
	r := service.NewRunner(step{"a", &log, false}, step{"b", &log, false}, step{"c", &log, true}, step{"d", &log, false})
	err := r.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "c cannot start") {
		t.Fatalf("start: %v, want c's failure", err)
	}
	want := []string{"start a", "start b", "stop b", "stop a"}
	if !slices.Equal(log, want) {
		t.Fatalf("lifecycle %q, want %q", log, want)
	}
}

func TestEveryStopWaitsForTheRunInProgress(t *testing.T) {
	ctx := context.Background()
	running, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	runs, ended := 0, 0
	s := service.Every(time.Hour, func(ctx context.Context) {
		mu.Lock()
		runs++
		mu.Unlock()
		close(running)
		<-release
		mu.Lock()
		ended++
		mu.Unlock()
	})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-running // the first run starts at once
	stopped := make(chan error)
	go func() { stopped <- s.Stop(ctx) }()
	// Stop is waiting for the run: a Stop bounded by a context that has
	// ended gives up with the context's error instead.
	short, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Stop(short); !errors.Is(err, context.Canceled) {
		t.Fatalf("stop with an ended context: %v", err)
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if runs != 1 || ended != 1 {
		t.Fatalf("runs %d, ended %d: Stop returned before the run ended", runs, ended)
	}
}

// TestBackgroundDoesTheServersWork runs the background services over a
// real store and watches each do its part, in the database: the sweeper
// expires a hold, the offers give its unit to the waitlist, the admitter
// admits from a room, the dispatcher delivers a webhook, the monitor
// audits.
func TestBackgroundDoesTheServersWork(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "bg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	delivered := make(chan string, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		delivered <- string(b)
	}))
	defer hook.Close()
	if _, err := s.CreateWebhook(ctx, holdfast.Webhook{ID: "wh_bg", URL: hook.URL, Secret: signature.NewSecret(), Events: []holdfast.EventType{holdfast.EventHoldExpired}}); err != nil {
		t.Fatal(err)
	}
	holdfasttest.MustCreatePool(t, s, "p", 1, 0)
	gone := holdfasttest.MustHold(t, s, "alice", holdfast.Line{Pool: "p", Quantity: 1})
	entry, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "p", Holder: "bob", Quantity: 1})
	if err != nil {
		t.Fatal(err)
	}
	holdfasttest.MustExpire(t, s, gone.ID)
	holdfasttest.MustCreatePool(t, s, "q", 10, 0)
	if _, err := s.CreateRoom(ctx, holdfast.Room{ID: "r", Pools: []string{"q"}, OpensAt: time.Now().Add(-time.Second),
		AdmitPerSecond: 100, AdmitTTLSeconds: 60, MaxInside: 10}); err != nil {
		t.Fatal(err)
	}
	ticket, err := s.JoinRoom(ctx, "r", "carol", "")
	if err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	bg := service.Background(s, service.Config{SweepInterval: 20 * time.Millisecond, AuditInterval: 50 * time.Millisecond,
		QueueInterval: 20 * time.Millisecond, Registerer: reg, Webhooks: webhook.Config{AllowPrivate: true, Poll: 20 * time.Millisecond}})
	if err := bg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer bg.Stop(ctx)

	// Each waits on the database's answer, with a deadline for a loaded
	// machine; nothing here measures time.
	until := func(what string, done func() bool) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for !done() {
			if time.Now().After(deadline) {
				t.Fatalf("after a minute of background work: %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	until("the hold is not expired", func() bool {
		h, err := s.GetHold(ctx, gone.ID)
		return err == nil && h.Status == holdfast.StatusExpired
	})
	until("bob's entry was not offered the unit", func() bool {
		e, err := s.WaitlistEntry(ctx, "p", entry.ID)
		return err == nil && e.Status == holdfast.WaitlistOffered && e.HoldID != ""
	})
	until("carol was not admitted", func() bool {
		tk, err := s.RoomTicket(ctx, "r", ticket.Ticket)
		return err == nil && tk.Status == holdfast.TicketAdmitted
	})
	select {
	case body := <-delivered:
		if !strings.Contains(body, gone.ID) {
			t.Fatalf("the webhook delivered %s, not the expiry of %s", body, gone.ID)
		}
	case <-time.After(time.Minute):
		t.Fatal("no webhook delivered in a minute")
	}
	until("the monitor has not audited", func() bool {
		return cleanAudits(t, reg) >= 1
	})
	if err := bg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM events WHERE type = 'hold.expired'`); n != 1 {
		t.Fatalf("hold.expired events: %d, want 1", n)
	}
	holdfasttest.MustAuditClean(t, s)
}

// cleanAudits is the monitor's clean runs as the registry counts them.
func cleanAudits(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "holdfast_audit_runs_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == "clean" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
