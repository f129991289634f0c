package metrics

import (
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/holdfast/holdfast"
)

type fixedStats holdfast.Stats

func (f fixedStats) Stats() holdfast.Stats { return holdfast.Stats(f) }

// What RegisterStats exports, ParseStats reads back: the lab counts a
// server's batches from its /metrics with it.
func TestParseStatsReadsWhatIsExported(t *testing.T) {
	var want holdfast.Stats
	for i, c := range Counters {
		*c.Field(&want) = int64(1000*i + 7)
	}
	reg := prometheus.NewRegistry()
	RegisterStats(reg, fixedStats(want))
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	got, err := ParseStats(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range Counters {
		if g, w := *c.Field(&got), *c.Field(&want); g != w {
			t.Errorf("%s: read %d, exported %d", c.Name, g, w)
		}
	}
}
