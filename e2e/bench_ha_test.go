package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkHADatastores prints, in one run, ConfigMap creates/s and p95 from
// 50 client-go clients (K2_BENCH_CLIENTS) for one `k2 server` on SQLite, three
// servers on an embedded etcd and three servers on one external etcd
// (Debian's etcd 3.4), each HA cluster deployed on the local provider with
// sim agents, loaded through its first server; the resident memory of each
// server after the load; and the time from SIGKILL of the etcd leader's
// server (the first server on the external etcd) to the next acknowledged
// write of a client that moves to another server on an error.
func BenchmarkHADatastores(b *testing.B) {
	clients := benchClients(b)
	for range b.N {
		sq := startServer(b, b.TempDir())
		r := createLoad(sq.Client(), clients, 10*time.Second, "sq")
		sq.Stop()
		fmt.Printf("SQLite, 1 server: %d clients %.0f creates/s, p95 %s, %d errors\n", clients, r.rate, r.p95, r.errors)
		b.ReportMetric(r.rate, "creates/s_sqlite")
		b.ReportMetric(float64(r.p95.Milliseconds()), "p95_ms_sqlite")

		ep := startEtcd(b)
		for _, c := range []struct{ name, env, datastore string }{
			{"embedded etcd, 3 servers", "hb-etcd", ""},
			{"external etcd, 3 servers", "hb-ext", ep},
		} {
			home := b.TempDir()
			ref := haEnv(b, home, c.env)
			mustK2(b, home, "deploy", ref, "--env", c.env, "--set", "datastore="+c.datastore)
			st := getHAStatus(b, home, c.env)
			r := createLoad(serverClient(b, home, c.env, st.Servers[0].Name), clients, 10*time.Second, "load")
			var rss []string
			var rssMax float64
			for _, s := range st.Servers {
				mb := serverRSS(home, s.Name)
				rss = append(rss, fmt.Sprintf("%s %.0f MB", s.Name, mb))
				rssMax = max(rssMax, mb)
			}
			victim, failover := killLeaderAndWriteTimed(b, home, c.env)
			destroyAndCheck(b, home, c.env)
			fmt.Printf("%s: %d clients %.0f creates/s, p95 %s, %d errors; RSS after the load: %s; SIGKILL of %s → next write after %s\n",
				c.name, clients, r.rate, r.p95, r.errors, strings.Join(rss, ", "), victim, failover.Round(time.Millisecond))
			key := strings.Fields(c.name)[0]
			b.ReportMetric(r.rate, "creates/s_"+key)
			b.ReportMetric(float64(r.p95.Milliseconds()), "p95_ms_"+key)
			b.ReportMetric(failover.Seconds(), "failover_s_"+key)
			b.ReportMetric(rssMax, "rss_max_MB_"+key)
		}
	}
}

// serverRSS is the resident memory in MB of the k2 server of local machine
// name (0 when it cannot be read).
func serverRSS(home, name string) float64 {
	b, err := os.ReadFile(filepath.Join(home, "local", "machines", name, "pid"))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	sup, _ := strconv.Atoi(f[0])
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", childWith(sup, "server"))) // the supervisor's server
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
