package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"k2.dev/k2/provision/agent/agenttest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if used {
		if c, err := agenttest.Start(); err == nil {
			os.RemoveAll(c.Dir)
		}
	}
	os.Exit(code)
}

var used bool

// query asks d for name and returns the answer's addresses and rcode.
func query(t *testing.T, d *DNS, name string, typ dnsmessage.Type) ([]string, dnsmessage.RCode) {
	t.Helper()
	var ips []string
	rrs, rc := queryAll(t, d, name, typ)
	for _, r := range rrs {
		if a, ok := strings.CutPrefix(r, "A "); ok {
			ips = append(ips, a)
		}
	}
	return ips, rc
}

// queryAll asks d for name and returns every answer as "TYPE data" and the
// rcode.
func queryAll(t *testing.T, d *DNS, name string, typ dnsmessage.Type) ([]string, dnsmessage.RCode) {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET})
	q, _ := b.Finish()
	var p dnsmessage.Parser
	h, err := p.Start(d.Answer(context.Background(), q, 512))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if h.ID != 7 || !h.Response {
		t.Fatalf("%s: header %+v", name, h)
	}
	_ = p.SkipAllQuestions()
	var out []string
	for {
		rh, err := p.AnswerHeader()
		if err != nil {
			break
		}
		if !strings.EqualFold(rh.Name.String(), name) {
			t.Errorf("%s: answer owned by %s", name, rh.Name)
		}
		switch rh.Type {
		case dnsmessage.TypeA:
			r, _ := p.AResource()
			out = append(out, "A "+net.IP(r.A[:]).String())
		case dnsmessage.TypeSRV:
			r, _ := p.SRVResource()
			out = append(out, fmt.Sprintf("SRV %d %s", r.Port, r.Target))
		case dnsmessage.TypeCNAME:
			r, _ := p.CNAMEResource()
			out = append(out, "CNAME "+r.CNAME.String())
		case dnsmessage.TypePTR:
			r, _ := p.PTRResource()
			out = append(out, "PTR "+r.PTR.String())
		case dnsmessage.TypeTXT:
			r, _ := p.TXTResource()
			out = append(out, "TXT "+strings.Join(r.TXT, " "))
		default:
			_ = p.SkipAnswer()
			out = append(out, rh.Type.String())
		}
	}
	slices.Sort(out)
	return out, h.RCode
}

// TestDNSAnswersFromTheAPI runs the node DNS against the real in-process
// control plane: a ClusterIP Service resolves to its ClusterIP, a headless
// one to its ready endpoints, unknown names under the cluster domain are
// NXDOMAIN, and other names go to the upstream (none here: SERVFAIL).
func TestDNSAnswersFromTheAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane; skipped with -short")
	}
	used = true
	c, err := agenttest.Start()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := "dns-test"
	cs := c.Kube
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	web, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "pg", Port: 5432}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "db-1", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("pg"), Port: ptr.To[int32](5432), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.42.0.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.42.1.9"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
			{Addresses: []string{"10.42.1.10"}, Hostname: ptr.To("db-0"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "ext"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.invalid"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d, inf := NewDNS(cs, ClusterDomain, nil, nil)
	if err := waitSynced(ctx, inf); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ips, rc := query(t, d, "db."+ns+".svc.cluster.local.", dnsmessage.TypeA)
		if rc == dnsmessage.RCodeSuccess && len(ips) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, tc := range []struct {
		name string
		want []string
		rc   dnsmessage.RCode
	}{
		{"web." + ns + ".svc.cluster.local.", []string{web.Spec.ClusterIP}, dnsmessage.RCodeSuccess},
		{"WEB." + strings.ToUpper(ns) + ".svc.cluster.local.", []string{web.Spec.ClusterIP}, dnsmessage.RCodeSuccess},
		{"db." + ns + ".svc.cluster.local.", []string{"10.42.0.7", "10.42.1.10"}, dnsmessage.RCodeSuccess}, // the unready one left out
		{"db-0.db." + ns + ".svc.cluster.local.", []string{"10.42.1.10"}, dnsmessage.RCodeSuccess},
		{"10-42-0-7.db." + ns + ".svc.cluster.local.", []string{"10.42.0.7"}, dnsmessage.RCodeSuccess},
		{"10-42-1-9.db." + ns + ".svc.cluster.local.", nil, dnsmessage.RCodeNameError}, // not ready
		{"10-42-3-4." + ns + ".pod.cluster.local.", []string{"10.42.3.4"}, dnsmessage.RCodeSuccess},
		{"nope." + ns + ".svc.cluster.local.", nil, dnsmessage.RCodeNameError},
		{"web.other.svc.cluster.local.", nil, dnsmessage.RCodeNameError},
		{ns + ".svc.cluster.local.", nil, dnsmessage.RCodeSuccess}, // exists, no address
		{"example.invalid.", nil, dnsmessage.RCodeServerFailure},   // no upstream configured
	} {
		ips, rc := query(t, d, tc.name, dnsmessage.TypeA)
		if rc != tc.rc || !slices.Equal(ips, tc.want) {
			t.Errorf("%s: %v %v, want %v %v", tc.name, ips, rc, tc.want, tc.rc)
		}
	}
	svcName := "web." + ns + ".svc.cluster.local."
	rev := strings.Split(web.Spec.ClusterIP, ".")
	for _, tc := range []struct {
		name string
		typ  dnsmessage.Type
		want []string
		rc   dnsmessage.RCode
	}{
		{"_http._tcp." + svcName, dnsmessage.TypeSRV, []string{"SRV 80 " + svcName}, dnsmessage.RCodeSuccess},
		{"_dns._udp." + svcName, dnsmessage.TypeSRV, []string{"SRV 53 " + svcName}, dnsmessage.RCodeSuccess},
		{"_dns._tcp." + svcName, dnsmessage.TypeSRV, nil, dnsmessage.RCodeNameError},
		{"_pg._tcp.db." + ns + ".svc.cluster.local.", dnsmessage.TypeSRV, []string{
			"SRV 5432 10-42-0-7.db." + ns + ".svc.cluster.local.", "SRV 5432 db-0.db." + ns + ".svc.cluster.local."}, dnsmessage.RCodeSuccess},
		{"ext." + ns + ".svc.cluster.local.", dnsmessage.TypeCNAME, []string{"CNAME db.example.invalid."}, dnsmessage.RCodeSuccess},
		{"ext." + ns + ".svc.cluster.local.", dnsmessage.TypeA, []string{"CNAME db.example.invalid."}, dnsmessage.RCodeSuccess},
		{rev[3] + "." + rev[2] + "." + rev[1] + "." + rev[0] + ".in-addr.arpa.", dnsmessage.TypePTR, []string{"PTR " + svcName}, dnsmessage.RCodeSuccess},
		{"10.1.42.10.in-addr.arpa.", dnsmessage.TypePTR, []string{"PTR db-0.db." + ns + ".svc.cluster.local."}, dnsmessage.RCodeSuccess},
		{"9.9.9.10.in-addr.arpa.", dnsmessage.TypePTR, nil, dnsmessage.RCodeServerFailure}, // not the cluster's: upstream (none)
		{"dns-version.cluster.local.", dnsmessage.TypeTXT, []string{"TXT 1.1.0"}, dnsmessage.RCodeSuccess},
	} {
		got, rc := queryAll(t, d, tc.name, tc.typ)
		if rc != tc.rc || !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: %v %v, want %v %v", tc.name, tc.typ, got, rc, tc.want, tc.rc)
		}
	}
	// AAAA for an IPv4-only Service: the name exists, no records.
	if ips, rc := query(t, d, "web."+ns+".svc.cluster.local.", dnsmessage.TypeAAAA); rc != dnsmessage.RCodeSuccess || len(ips) != 0 {
		t.Errorf("AAAA: %v %v", ips, rc)
	}
}

func TestUpstreamsSkipLoopback(t *testing.T) {
	f := t.TempDir() + "/resolv.conf"
	os.WriteFile(f, []byte("search x\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nnameserver fd00::1\n"), 0o644)
	got := Upstreams(f)
	if want := []string{"10.0.0.2:53", "[fd00::1]:53"}; !slices.Equal(got, want) {
		t.Errorf("Upstreams = %v, want %v", got, want)
	}
}
