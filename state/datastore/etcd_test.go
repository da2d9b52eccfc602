package datastore

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"k2.dev/k2/internal/testutil"
)

// testPKI writes an etcd CA and one certificate (server and client auth,
// for 127.0.0.1) that every role of the test members uses.
func testPKI(t *testing.T) TLSFiles {
	t.Helper()
	dir := t.TempDir()
	ca, err := testutil.NewCA("test-etcd-ca")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("member", []net.IP{net.IPv4(127, 0, 0, 1)}, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caPath, certPath, keyPath := write("ca.crt", ca.CertPEM), write("m.crt", cert), write("m.key", key)
	return TLSFiles{CA: caPath, ServerCert: certPath, ServerKey: keyPath, PeerCert: certPath, PeerKey: keyPath, ClientCert: certPath, ClientKey: keyPath}
}

type testMember struct {
	dir string
	cfg EtcdConfig
	ds  *Datastore
}

func newMember(t *testing.T, name string, tls TLSFiles) *testMember {
	return &testMember{dir: t.TempDir(), cfg: EtcdConfig{
		Name:      name,
		ClientURL: "https://127.0.0.1:" + strconv.Itoa(testutil.FreePort(t)),
		PeerURL:   "https://127.0.0.1:" + strconv.Itoa(testutil.FreePort(t)),
		TLS:       tls,
	}}
}

func (m *testMember) start(t *testing.T, ctx context.Context) {
	t.Helper()
	cfg := m.cfg
	ds, err := Start(ctx, Config{DataDir: m.dir, Etcd: &cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("starting member %s: %v", m.cfg.Name, err)
	}
	m.ds = ds
	t.Cleanup(func() {
		if m.ds != nil {
			m.ds.Stop()
		}
	})
}

func (m *testMember) stop() {
	m.ds.Stop()
	m.ds = nil
}

// dial connects to the member through its client URL with TLS, as the
// apiserver and k2 backup do.
func (m *testMember) dial(t *testing.T) *clientv3.Client {
	t.Helper()
	c, _, err := DialEtcd(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestEmbeddedEtcdCluster grows a cluster from one member to three through
// AddMember (learners promoted by the leader), writes through one member and
// reads through another, stops the leader and keeps writing, restarts it on
// its data and sees it catch up, then re-creates a member on an empty data
// directory (its old self is removed and it joins again).
func TestEmbeddedEtcdCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tls := testPKI(t)
	ms := []*testMember{newMember(t, "s0", tls), newMember(t, "s1", tls), newMember(t, "s2", tls)}
	ms[0].start(t, ctx)
	if ms[0].ds.Mode != ModeEtcd || len(ms[0].ds.EtcdServers) != 1 || ms[0].ds.EtcdTLS == nil {
		t.Fatalf("datastore: mode %s, servers %v", ms[0].ds.Mode, ms[0].ds.EtcdServers)
	}
	join := func(via, m *testMember) {
		t.Helper()
		var ic string
		var err error
		// One learner at a time: a second join waits for the first's promotion.
		for i := 0; ; i++ {
			if ic, err = via.ds.AddMember(ctx, m.cfg.Name, m.cfg.PeerURL); err == nil || i == 50 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("adding %s: %v", m.cfg.Name, err)
		}
		m.cfg.InitialCluster = ic
		m.start(t, ctx)
	}
	join(ms[0], ms[1])
	join(ms[0], ms[2])
	waitFor(t, 30*time.Second, "3 voting members", func() error {
		list, err := ms[0].ds.Members(ctx)
		if err != nil {
			return err
		}
		voting := 0
		for _, m := range list {
			if !m.Learner && m.Started {
				voting++
			}
		}
		if voting != 3 {
			return fmt.Errorf("members: %+v", list)
		}
		return nil
	})

	c0, c2 := ms[0].dial(t), ms[2].dial(t)
	if _, err := c0.Put(ctx, "/registry/test/a", "1"); err != nil {
		t.Fatal(err)
	}
	if g, err := c2.Get(ctx, "/registry/test/a"); err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "1" {
		t.Fatalf("read through s2: %v %v", g, err)
	}

	// Stop the leader: the other two elect one and keep taking writes.
	st, err := ms[0].ds.EtcdStatus(ctx)
	if err != nil || !st.Healthy || st.Leader == "" {
		t.Fatalf("status: %+v %v", st, err)
	}
	var leader *testMember
	var others []*testMember
	for _, m := range ms {
		if m.cfg.Name == st.Leader {
			leader = m
		} else {
			others = append(others, m)
		}
	}
	leader.stop()
	oc := others[0].dial(t)
	waitFor(t, 15*time.Second, "a write after the leader stopped", func() error {
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		defer wcancel()
		_, err := oc.Put(wctx, "/registry/test/b", "2")
		return err
	})
	leader.start(t, ctx) // same data directory: a restart, not a join
	lc := leader.dial(t)
	waitFor(t, 15*time.Second, "the restarted member to see the write made while it was down", func() error {
		g, err := lc.Get(ctx, "/registry/test/b")
		if err != nil || len(g.Kvs) != 1 {
			return fmt.Errorf("%v %w", g, err)
		}
		return nil
	})

	// A member whose disk was lost comes back empty and joins again.
	lost := others[1]
	lost.stop()
	if err := os.RemoveAll(lost.dir); err != nil {
		t.Fatal(err)
	}
	join(others[0], lost)
	waitFor(t, 30*time.Second, "the re-created member to be a voting member again, with no duplicate", func() error {
		list, err := others[0].ds.Members(ctx)
		if err != nil {
			return err
		}
		n := 0
		for _, m := range list {
			if m.Name == lost.cfg.Name && !m.Learner {
				n++
			}
		}
		if len(list) != 3 || n != 1 {
			return fmt.Errorf("members: %+v", list)
		}
		return nil
	})
	g, err := lost.dial(t).Get(ctx, "/registry/test/", clientv3.WithPrefix())
	if err != nil || len(g.Kvs) != 2 {
		t.Fatalf("re-created member has %v (%v), want both keys", g, err)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, d, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
