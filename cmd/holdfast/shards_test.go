package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/testrig/pgtest"
)

// holdfast serve over three PostgreSQL databases: the catalog and two
// shards. Pools go to shards by partition; a hold across two events is
// atomic and confirms whole; reads show the partition; the audit and the
// metrics cover every shard; shards given in another order are refused.
func TestServeShards(t *testing.T) {
	cl := pgtest.StartCluster(t, "max_prepared_transactions=20")
	ctx := context.Background()
	var urls []string
	for _, name := range []string{"catalog", "east", "west"} {
		cl.CreateDatabase(ctx, name)
		urls = append(urls, cl.URL(name))
	}
	const admin = "an-admin-key-of-some-length"
	base := startServer(t, "--db", urls[0], "--shard", urls[1], "--shard", urls[2], "--admin-key", admin)
	cli := adminCLI(t, base, admin)
	cli("pool", "create", "--id", "day1", "--capacity", "10", "--partition", "festival-day1")
	cli("pool", "create", "--id", "day2", "--capacity", "10", "--partition", "festival-day2")
	cli("pool", "create", "--id", "day2-vip", "--capacity", "1", "--partition", "festival-day2")
	if out := cli("pool", "get", "day2-vip"); !strings.Contains(out, `"partition": "festival-day2"`) && !strings.Contains(out, `"partition":"festival-day2"`) {
		t.Fatalf("a pool read back without its partition: %s", out)
	}

	// Within one partition: one shard, a plain hold id of that shard.
	var vip holdfast.Hold
	if err := json.Unmarshal([]byte(cli("hold", "create", "--holder", "fan", "--pool", "day2:1", "--pool", "day2-vip:1")), &vip); err != nil || !strings.HasPrefix(vip.ID, "h1_") {
		t.Fatalf("a hold within one partition: %+v %v", vip, err)
	}
	// Across partitions on two shards: all or nothing. The VIP ticket is
	// gone, so a pass asking for it takes nothing on day 1 either.
	if code, _, errOut := runCmd(t, "hold", "create", "--holder", "fan2", "--pool", "day1:2", "--pool", "day2-vip:1", "--server", base, "--key", admin); code != 1 || !strings.Contains(errOut, "sold_out") {
		t.Fatalf("a pass over a sold-out line: exit %d %s", code, errOut)
	}
	if out := cli("pool", "get", "day1"); !strings.Contains(out, `"held": 0`) && !strings.Contains(out, `"held":0`) {
		t.Fatalf("a refused hold across shards took something: %s", out)
	}
	var pass holdfast.Hold
	if err := json.Unmarshal([]byte(cli("hold", "create", "--holder", "fan2", "--pool", "day1:2", "--pool", "day2:3")), &pass); err != nil || !strings.HasPrefix(pass.ID, "hx0-1_") {
		t.Fatalf("a festival pass: %+v %v", pass, err)
	}
	if out := cli("hold", "confirm", pass.ID); !strings.Contains(out, `"confirmed"`) {
		t.Fatalf("confirming a pass: %s", out)
	}
	var got holdfast.Hold
	if err := json.Unmarshal([]byte(cli("hold", "get", pass.ID)), &got); err != nil || got.Status != holdfast.StatusConfirmed ||
		len(got.Lines) != 2 || got.Lines[0].Pool != "day1" || got.Lines[1].Quantity != 3 {
		t.Fatalf("the pass read back: %+v %v", got, err)
	}

	// The feed follows every shard: page by page, each event once.
	var created []string
	seen := map[string]bool{}
	for after, pages := "", 0; pages < 20; pages++ {
		req, _ := http.NewRequest("GET", base+"/v1/events?limit=2&after="+after, nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Events []holdfast.Event `json:"events"`
			Next   string           `json:"next"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("events page: %d %v", resp.StatusCode, err)
		}
		for _, e := range page.Events {
			key := e.Cursor
			if seen[key] {
				t.Fatalf("event %s twice", key)
			}
			seen[key] = true
			if e.Type == holdfast.EventPoolCreated {
				created = append(created, e.Subject)
			}
		}
		if len(page.Events) == 0 {
			break
		}
		after = page.Next
	}
	if len(created) != 3 {
		t.Fatalf("pool.created events over the shards: %v, want day1, day2 and day2-vip", created)
	}

	// Day 2 moves to the other shard while the server runs: the server
	// finds the held VIP ticket and the pool where they are now, and the
	// hold confirms there.
	dbs := []string{"--db", urls[0], "--shard", urls[1], "--shard", urls[2]}
	code, out, errOut := runCmd(t, append([]string{"shard", "move", "festival-day2", "--to", "2"}, dbs...)...)
	if code != 0 || !strings.Contains(out, "moved partition festival-day2 from shard 1 to shard 2: 2 pools, 0 groups, 0 units, 2 holds") {
		t.Fatalf("shard move: exit %d %s%s", code, out, errOut)
	}
	if out := cli("hold", "confirm", vip.ID); !strings.Contains(out, `"confirmed"`) {
		t.Fatalf("confirming a hold after its partition moved: %s", out)
	}
	if out := cli("pool", "get", "day2-vip"); !strings.Contains(out, `"confirmed": 1`) && !strings.Contains(out, `"confirmed":1`) {
		t.Fatalf("the moved pool: %s", out)
	}
	code, out, errOut = runCmd(t, append([]string{"shard", "list"}, dbs...)...)
	if code != 0 || !regexp.MustCompile(`festival-day2\s+2\s+1\s+2\s+0\s+0`).MatchString(out) {
		t.Fatalf("shard list: exit %d %s%s", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, append([]string{"shard", "move", "festival-day3", "--to", "1"}, dbs...)...); code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("moving a partition that is not there: exit %d %s", code, errOut)
	}

	code, out, errOut = runCmd(t, "audit", "--db", urls[0], "--shard", urls[1], "--shard", urls[2])
	if code != 0 {
		t.Fatalf("audit over the shards: exit %d %s%s", code, out, errOut)
	}
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `holdfast_db_connections_open{shard="2"}`) {
		t.Fatalf("/metrics has no per-shard series:\n%.2000s", metrics)
	}

	// The shards swapped: refused before anything is routed.
	code, _, errOut = runCmd(t, "serve", "--addr", "127.0.0.1:0", "--db", urls[0], "--shard", urls[2], "--shard", urls[1], "--admin-key", admin)
	if code == 0 || !strings.Contains(errOut, "not the database the catalog knows") {
		t.Fatalf("serve with the shards swapped: exit %d %s", code, errOut)
	}
}

// serve --shard on a PostgreSQL that cannot prepare transactions (most
// installs' default) refuses to start, naming the setting, the value
// found and the value needed — not a 500 at the first hold across shards.
func TestServeShardsRefusesWithoutPreparedTransactions(t *testing.T) {
	cl := pgtest.StartCluster(t) // max_prepared_transactions = 0
	ctx := context.Background()
	var urls []string
	for _, name := range []string{"catalog", "east"} {
		cl.CreateDatabase(ctx, name)
		urls = append(urls, cl.URL(name))
	}
	code, _, errOut := runCmd(t, "serve", "--addr", "127.0.0.1:0", "--db", urls[0], "--shard", urls[1], "--admin-key", "an-admin-key-of-some-length")
	if code == 0 || !strings.Contains(errOut, "max_prepared_transactions = 0") || !strings.Contains(errOut, "above 0") || !strings.Contains(errOut, "postgresql.conf") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
}
