// Package ec2fake is a FAKE of the parts of Amazon EC2, S3 and SSM that
// k2's aws provider uses, for tests: EC2 cannot run here. It is an
// http.Handler speaking the wire protocols the AWS SDKs speak — the EC2
// Query API (form-encoded POST, XML answers and errors), the S3 REST API
// (path-style) and SSM's JSON 1.1 — so the real aws-sdk-go-v2 and Debian's
// python3-boto3 talk to it unchanged (a test checks boto3 against it).
//
// What it models:
//   - EC2: RunInstances (MinCount/MaxCount, ClientToken idempotency with
//     IdempotentParameterMismatch, tags at launch, user-data, block device
//     mappings, IMDS options, DryRun), DescribeInstances (filters, states
//     pending → running → shutting-down → terminated, terminated ones stay
//     visible), TerminateInstances, GetConsoleOutput; security groups
//     (Create/Describe/Delete, AuthorizeSecurityGroupIngress; deleting a
//     group a live instance uses is a DependencyViolation); CreateTags and
//     DescribeTags; DescribeInstanceTypes (a fixed catalogue, paginated);
//     DescribeVpcs/DescribeSubnets (one default VPC and subnet, private
//     addresses handed out from the subnet); DescribeImages, ImportSnapshot
//     and DescribeImportSnapshotTasks (reads the S3 object), RegisterImage.
//   - S3: CreateBucket, HeadBucket, PutObject (plain or aws-chunked bodies),
//     HeadObject, DeleteObject. SSM: GetParameter (public AMI parameters).
//   - Eventual consistency: a new instance, security group or image is
//     invisible to reads and references for Options.ConsistencyDelay.
//   - Faults: Throttle makes the next calls of an action fail with
//     RequestLimitExceeded; LoseResponses performs them and then answers
//     InternalError (so a client retry must be idempotent); Deny answers
//     UnauthorizedOperation.
//   - Booting: with Options.Booter, each instance is handed to the Booter
//     (for example ec2boot, a network namespace running `k2 init`), and
//     IMDSHandler serves that instance's metadata and user-data with the
//     IMDSv2 token flow.
//
// What it leaves out: request signatures are not verified (any credentials
// are accepted, unless Options.AccessKeyID is set); no IAM policies beyond
// Deny; no billing, quotas, placement, capacity errors, spot, ENIs, EBS
// volumes as resources, snapshots beyond import, egress rules, IPv6,
// pagination of anything but DescribeInstanceTypes, multipart S3 uploads,
// or regions other than the one it is created for. Rules of security
// groups are recorded, not enforced. Stopping and starting instances is not
// modelled.
package ec2fake

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Region is the one region served; default "us-east-1".
	Region string
	// AccountID owns every resource; default "123456789012".
	AccountID string
	// SubnetCIDR is the default VPC's one subnet; default "172.31.0.0/20".
	// Instances get addresses from its 5th on (AWS reserves the first four).
	SubnetCIDR string
	// ConsistencyDelay hides new instances, groups and images from reads
	// for this long (EC2's eventual consistency); default 0.
	ConsistencyDelay time.Duration
	// BootDelay is how long an instance stays pending without a Booter;
	// default 100ms.
	BootDelay time.Duration
	// TerminateDelay is how long an instance stays shutting-down; default
	// 100ms.
	TerminateDelay time.Duration
	// ImportDelay is how long an import snapshot task stays active; default
	// 200ms.
	ImportDelay time.Duration
	// Booter boots instances as real machines; nil boots nothing.
	Booter Booter
	// AccessKeyID, if set, is the only access key accepted: other keys get
	// AuthFailure.
	AccessKeyID string
	// Logger gets one line per request; nil discards.
	Logger *slog.Logger
}

// Call is one request the fake received, for tests that check the exact
// requests a client makes.
type Call struct {
	Service string // "ec2", "s3" or "ssm"
	Action  string // EC2 action, "PutObject", "GetParameter"…
	// Params are the EC2 form values; for S3 "Bucket" and "Key"; for SSM
	// the JSON body's top-level strings.
	Params url.Values
	// Error is the error code answered, "" for success.
	Error string
	Time  time.Time
}

// Server is the fake. Create it with New; it is an http.Handler.
type Server struct {
	o Options

	mu         sync.Mutex
	seq        int
	calls      []Call
	onCall     []func(Call)
	created    map[string]time.Time // resource id → creation, for visibility
	tags       map[string]map[string]string
	vpc        *vpc
	subnet     *subnet
	nextIP     netip.Addr
	instances  map[string]*instance
	order      []string // instance ids in creation order
	tokens     map[string]*reservation
	groups     map[string]*securityGroup
	images     map[string]*image
	tasks      map[string]*importTask
	snapshots  map[string]*snapshot
	buckets    map[string]map[string]*object
	params     map[string]string
	throttle   map[string]int
	lose       map[string]int
	deny       map[string]bool
	imdsTokens map[string]imdsToken
}

// New returns a fake with one default VPC and subnet, the instance type
// catalogue, and public Debian 12 AMIs (amd64 and arm64) whose ids the SSM
// parameters /aws/service/debian/release/12/latest/{amd64,arm64} name.
func New(o Options) *Server {
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.AccountID == "" {
		o.AccountID = "123456789012"
	}
	if o.SubnetCIDR == "" {
		o.SubnetCIDR = "172.31.0.0/20"
	}
	if o.BootDelay == 0 {
		o.BootDelay = 100 * time.Millisecond
	}
	if o.TerminateDelay == 0 {
		o.TerminateDelay = 100 * time.Millisecond
	}
	if o.ImportDelay == 0 {
		o.ImportDelay = 200 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		o: o, created: map[string]time.Time{}, tags: map[string]map[string]string{},
		instances: map[string]*instance{}, tokens: map[string]*reservation{},
		groups: map[string]*securityGroup{}, images: map[string]*image{}, tasks: map[string]*importTask{},
		snapshots: map[string]*snapshot{}, buckets: map[string]map[string]*object{}, params: map[string]string{},
		throttle: map[string]int{}, lose: map[string]int{}, deny: map[string]bool{}, imdsTokens: map[string]imdsToken{},
	}
	prefix := netip.MustParsePrefix(o.SubnetCIDR).Masked()
	s.vpc = &vpc{ID: s.newID("vpc"), CIDR: prefix.String(), Default: true}
	s.subnet = &subnet{ID: s.newID("subnet"), VPC: s.vpc.ID, CIDR: prefix.String(), AZ: o.Region + "a"}
	s.nextIP = prefix.Addr().Next().Next().Next().Next()
	s.created[s.vpc.ID], s.created[s.subnet.ID] = time.Time{}, time.Time{}
	s.created[s.newDefaultGroup()] = time.Time{}
	for _, arch := range []string{"amd64", "arm64"} {
		id := s.newID("ami")
		s.images[id] = &image{ID: id, Name: "debian-12-" + arch + "-fake", Arch: awsArch(arch), Owner: "136693071363",
			State: "available", Public: true, Boot: BootCloudInit, RootDevice: "/dev/xvda", Ena: true,
			BootMode: "uefi-preferred", Created: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
		s.created[id] = time.Time{}
		s.params["/aws/service/debian/release/12/latest/"+arch] = id
	}
	return s
}

// newDefaultGroup makes the VPC's "default" security group.
func (s *Server) newDefaultGroup() string {
	id := s.newID("sg")
	s.groups[id] = &securityGroup{ID: id, Name: "default", Description: "default VPC security group", VPC: s.vpc.ID}
	return id
}

// newID makes an AWS-shaped id: prefix-17 hex digits.
func (s *Server) newID(prefix string) string {
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)[:17]
}

// visible reports whether a resource is past its consistency delay.
func (s *Server) visible(id string, now time.Time) bool {
	t, ok := s.created[id]
	return ok && !now.Before(t.Add(s.o.ConsistencyDelay))
}

// Throttle makes the next n calls of action fail with RequestLimitExceeded
// (HTTP 503), as EC2 does when a client calls too fast. action is an EC2
// action, "PutObject" or "GetParameter".
func (s *Server) Throttle(action string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle[action] += n
}

// LoseResponses makes the next n calls of action take effect and then
// answer InternalError (HTTP 500), as if the response was lost: a client
// that retries must not do the work twice.
func (s *Server) LoseResponses(action string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lose[action] += n
}

// Deny makes every call of action answer UnauthorizedOperation (EC2) or
// AccessDenied (S3, SSM), as a missing IAM permission does.
func (s *Server) Deny(action string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deny[action] = true
}

// OnCall registers f to run after each request (outside the fake's lock).
func (s *Server) OnCall(f func(Call)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onCall = append(s.onCall, f)
}

// Calls returns the requests received, of the given actions (none: all).
func (s *Server) Calls(actions ...string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if len(actions) == 0 || contains(actions, c.Action) {
			out = append(out, c)
		}
	}
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// Region returns the region the fake serves.
func (s *Server) Region() string { return s.o.Region }

// Parameter returns an SSM parameter's value, "" if unset.
func (s *Server) Parameter(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.params[name]
}

// SetParameter sets an SSM parameter.
func (s *Server) SetParameter(name, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.params[name] = value
}

func (s *Server) requestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// ServeHTTP routes a request to EC2, S3 or SSM by its shape: SSM by its
// X-Amz-Target header, S3 by the service in its signature's credential
// scope (or a bucket path), EC2 by the Action form value.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rid := s.requestID()
	if s.o.AccessKeyID != "" && accessKey(r) != s.o.AccessKeyID {
		writeError(w, rid, errf(http.StatusUnauthorized, "AuthFailure", "AWS was not able to validate the provided access credentials"))
		return
	}
	svc := signedService(r)
	switch {
	case strings.HasPrefix(r.Header.Get("X-Amz-Target"), "AmazonSSM."):
		s.serveSSM(w, r, rid)
	case svc == "s3" || (svc == "" && r.Method != http.MethodPost && r.URL.Path != "/"):
		s.serveS3(w, r, rid)
	default:
		s.serveEC2(w, r, rid)
	}
}

// signedService is the service of a SigV4 Authorization header's scope.
func signedService(r *http.Request) string {
	a := r.Header.Get("Authorization")
	_, cred, ok := strings.Cut(a, "Credential=")
	if !ok {
		return ""
	}
	cred, _, _ = strings.Cut(cred, ",")
	parts := strings.Split(cred, "/")
	if len(parts) < 5 {
		return ""
	}
	return parts[3]
}

func accessKey(r *http.Request) string {
	_, cred, ok := strings.Cut(r.Header.Get("Authorization"), "Credential=")
	if !ok {
		return ""
	}
	k, _, _ := strings.Cut(cred, "/")
	return k
}

// fault returns the injected fault for a call, if any, and counts it.
// Called with s.mu held.
func (s *Server) fault(service, action string) *apiError {
	if s.deny[action] {
		code := "UnauthorizedOperation"
		if service != "ec2" {
			code = "AccessDenied"
		}
		return errf(http.StatusForbidden, code, "You are not authorized to perform this operation. User: arn:aws:iam::%s:user/k2-test is not authorized to perform: %s:%s",
			s.o.AccountID, service, action)
	}
	if s.throttle[action] > 0 {
		s.throttle[action]--
		code := "RequestLimitExceeded"
		if service == "s3" {
			code = "SlowDown"
		}
		if service == "ssm" {
			code = "ThrottlingException"
		}
		return errf(http.StatusServiceUnavailable, code, "Request limit exceeded.")
	}
	return nil
}

// done records a call with its outcome, releases s.mu (held by the
// caller) and runs the OnCall hooks.
func (s *Server) done(c Call, aerr *apiError) {
	if aerr != nil {
		c.Error = aerr.code
	}
	c.Time = time.Now()
	s.calls = append(s.calls, c)
	s.o.Logger.Debug("ec2fake", "service", c.Service, "action", c.Action, "error", c.Error)
	hooks := append([]func(Call){}, s.onCall...)
	s.mu.Unlock()
	for _, f := range hooks {
		f(c)
	}
}

// born registers a new resource: its creation time (for the consistency
// delay) and its tags. Called with s.mu held.
func (s *Server) born(id string, now time.Time, tags map[string]string) {
	s.created[id] = now
	if len(tags) > 0 {
		s.tags[id] = tags
	}
}

type ec2Handler func(s *Server, p *params, now time.Time) (any, *apiError)

var ec2Actions = map[string]ec2Handler{
	"RunInstances":                  (*Server).runInstances,
	"DescribeInstances":             (*Server).describeInstances,
	"TerminateInstances":            (*Server).terminateInstances,
	"GetConsoleOutput":              (*Server).getConsoleOutput,
	"DescribeInstanceTypes":         (*Server).describeInstanceTypes,
	"CreateSecurityGroup":           (*Server).createSecurityGroup,
	"DescribeSecurityGroups":        (*Server).describeSecurityGroups,
	"DeleteSecurityGroup":           (*Server).deleteSecurityGroup,
	"AuthorizeSecurityGroupIngress": (*Server).authorizeIngress,
	"CreateTags":                    (*Server).createTags,
	"DescribeTags":                  (*Server).describeTags,
	"DescribeVpcs":                  (*Server).describeVpcs,
	"DescribeSubnets":               (*Server).describeSubnets,
	"DescribeImages":                (*Server).describeImages,
	"ImportSnapshot":                (*Server).importSnapshot,
	"DescribeImportSnapshotTasks":   (*Server).describeImportTasks,
	"RegisterImage":                 (*Server).registerImage,
}

// dryRunnable are the actions whose DryRun the fake answers.
var dryRunnable = map[string]bool{"RunInstances": true, "TerminateInstances": true, "CreateSecurityGroup": true,
	"DeleteSecurityGroup": true, "AuthorizeSecurityGroupIngress": true, "CreateTags": true, "ImportSnapshot": true, "RegisterImage": true}

func (s *Server) serveEC2(w http.ResponseWriter, r *http.Request, rid string) {
	if err := r.ParseForm(); err != nil {
		writeError(w, rid, badRequest("MalformedQueryString", "%v", err))
		return
	}
	action := r.Form.Get("Action")
	h, ok := ec2Actions[action]
	if !ok {
		writeError(w, rid, badRequest("InvalidAction", "The action %s is not valid for this web service (this fake serves %s).", action, strings.Join(actionNames(), ", ")))
		return
	}
	p := parseParams(r.Form)
	now := time.Now()
	s.mu.Lock()
	s.advance(now)
	resp, aerr := any(nil), s.fault("ec2", action)
	if aerr == nil && p.bool("DryRun") && dryRunnable[action] {
		aerr = errf(http.StatusPreconditionFailed, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
	}
	if aerr == nil {
		resp, aerr = h(s, p, now)
	}
	if aerr == nil && s.lose[action] > 0 {
		s.lose[action]--
		aerr = errf(http.StatusInternalServerError, "InternalError", "An internal error has occurred (response lost on purpose by ec2fake).")
	}
	s.done(Call{Service: "ec2", Action: action, Params: r.Form}, aerr)
	if aerr != nil {
		writeError(w, rid, aerr)
		return
	}
	writeXML(w, action, rid, resp)
}

func actionNames() []string {
	var out []string
	for a := range ec2Actions {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// advance moves instances and import tasks along in time. Called with
// s.mu held.
func (s *Server) advance(now time.Time) {
	for _, id := range s.order {
		in := s.instances[id]
		switch in.State {
		case statePending:
			if s.o.Booter == nil && now.Sub(in.Launched) >= s.o.BootDelay {
				in.State = stateRunning
			}
		case stateShuttingDown:
			if now.Sub(in.Terminating) >= s.o.TerminateDelay && !in.stopping {
				in.State = stateTerminated
				in.PrivateIP = ""
			}
		}
	}
	for _, t := range s.tasks {
		if t.Status == "active" && now.Sub(t.Started) >= s.o.ImportDelay {
			s.finishImport(t)
		}
	}
}

func readAllLimit(r io.Reader, n int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, n+1))
	if int64(len(b)) > n {
		return nil, fmt.Errorf("body larger than %d bytes", n)
	}
	return b, err
}

// InstanceInfo is a snapshot of one instance, for test assertions.
type InstanceInfo struct {
	ID, State, PrivateIP, Token string
	Tags                        map[string]string
}

// Instances returns every instance the fake made (terminated ones too),
// in launch order, ignoring the consistency delay.
func (s *Server) Instances() []InstanceInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(time.Now())
	var out []InstanceInfo
	for _, id := range s.order {
		in := s.instances[id]
		out = append(out, InstanceInfo{ID: id, State: in.State, PrivateIP: in.PrivateIP, Token: in.Token, Tags: copyTags(s.tags[id])})
	}
	return out
}

// GroupInfo is a snapshot of one security group, for test assertions.
type GroupInfo struct {
	ID, Name string
	Tags     map[string]string
	Rules    int
}

// SecurityGroups returns the security groups that exist, but the VPC's
// default one.
func (s *Server) SecurityGroups() []GroupInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []GroupInfo
	for id, g := range s.groups {
		if g.Name != "default" {
			out = append(out, GroupInfo{ID: id, Name: g.Name, Tags: copyTags(s.tags[id]), Rules: len(g.Rules)})
		}
	}
	sortByID(out, func(g GroupInfo) string { return g.ID })
	return out
}
