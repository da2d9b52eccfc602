package app

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	autoscalingv2ac "k8s.io/client-go/applyconfigurations/autoscaling/v2"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
)

// Labels on every child. LabelApp also selects the App's pods.
const (
	LabelApp       = "k2.dev/app"
	LabelName      = "app.kubernetes.io/name"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// AnnotationEnvHash on the pod template rolls the pods when env changes.
	AnnotationEnvHash = "k2.dev/env-hash"
)

// Defaults applied when the spec leaves them out.
const (
	DefaultReplicas            = 1
	DefaultCPUPercent          = 80
	DefaultVolumeSize          = "1Gi"
	DefaultAutoscaleCPURequest = "100m"
)

// Render returns the children a must own, in apply order: env ConfigMap and
// Secret, the Deployment or StatefulSet, Service, Ingress,
// HorizontalPodAutoscaler, PodDisruptionBudget. Each carries a controller
// owner reference to a (whose UID must be set for a live object).
func Render(a *App) ([]*unstructured.Unstructured, error) {
	if err := Validate(&a.Spec); err != nil {
		return nil, err
	}
	r := renderer{a: a, labels: map[string]string{
		LabelApp: a.Name, LabelName: a.Name, LabelManagedBy: FieldManager,
	}}
	var out []any
	cm, sec := r.env()
	if cm != nil {
		out = append(out, cm)
	}
	if sec != nil {
		out = append(out, sec)
	}
	if a.Spec.Volume != nil {
		out = append(out, r.statefulSet())
	} else {
		out = append(out, r.deployment())
	}
	if len(a.Spec.Ports) > 0 {
		out = append(out, r.service())
	}
	if a.Spec.Expose != nil {
		out = append(out, r.ingress())
	}
	if a.Spec.Autoscale != nil {
		out = append(out, r.hpa())
	}
	if a.Spec.Disruption != nil {
		out = append(out, r.pdb())
	}
	objs := make([]*unstructured.Unstructured, 0, len(out))
	for _, o := range out {
		u, err := toUnstructured(o)
		if err != nil {
			return nil, err
		}
		objs = append(objs, u)
	}
	return objs, nil
}

func toUnstructured(o any) (*unstructured.Unstructured, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(b); err != nil {
		return nil, err
	}
	return u, nil
}

type renderer struct {
	a       *App
	labels  map[string]string
	envHash string
}

func (r *renderer) meta() *metav1ac.ObjectMetaApplyConfiguration {
	t := true
	return metav1ac.ObjectMeta().
		WithName(r.a.Name).
		WithNamespace(r.a.Namespace).
		WithLabels(r.labels).
		WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion(GroupVersion.String()).WithKind(Kind).
			WithName(r.a.Name).WithUID(r.a.UID).
			WithController(t).WithBlockOwnerDeletion(t))
}

func (r *renderer) envName() string { return r.a.Name + "-env" }

// env returns the ConfigMap and Secret holding the App's environment (nil
// when there is nothing to hold) and sets the hash that rolls the pods.
func (r *renderer) env() (*corev1ac.ConfigMapApplyConfiguration, *corev1ac.SecretApplyConfiguration) {
	plain, secret := map[string]string{}, map[string][]byte{}
	h := sha256.New()
	for _, e := range r.a.Spec.Env {
		if e.Secret {
			secret[e.Name] = []byte(e.Value)
		} else {
			plain[e.Name] = e.Value
		}
	}
	keys := make([]string, 0, len(r.a.Spec.Env))
	for _, e := range r.a.Spec.Env {
		keys = append(keys, e.Name)
	}
	sort.Strings(keys)
	for _, k := range keys {
		_, isSecret := secret[k]
		fmt.Fprintf(h, "%s\x00%t\x00%s%s\x00", k, isSecret, plain[k], secret[k])
	}
	if len(keys) > 0 {
		r.envHash = hex.EncodeToString(h.Sum(nil))[:16]
	}
	var cm *corev1ac.ConfigMapApplyConfiguration
	var sec *corev1ac.SecretApplyConfiguration
	if len(plain) > 0 {
		cm = corev1ac.ConfigMap(r.envName(), r.a.Namespace)
		cm.ObjectMetaApplyConfiguration = r.meta().WithName(r.envName())
		cm.WithData(plain)
	}
	if len(secret) > 0 {
		sec = corev1ac.Secret(r.envName(), r.a.Namespace)
		sec.ObjectMetaApplyConfiguration = r.meta().WithName(r.envName())
		sec.WithType(corev1.SecretTypeOpaque).WithData(secret)
	}
	return cm, sec
}

type port struct {
	num   int32
	proto string
}

func (r *renderer) ports() []port {
	var ps []port
	for _, p := range r.a.Spec.Ports {
		n, proto, _ := p.Parse() // validated
		ps = append(ps, port{n, proto})
	}
	return ps
}

func portName(p port) string {
	return fmt.Sprintf("%s-%d", strings.ToLower(p.proto), p.num)
}

func (r *renderer) podTemplate() *corev1ac.PodTemplateSpecApplyConfiguration {
	s := r.a.Spec
	c := corev1ac.Container().WithName("app").WithImage(s.Image)
	if len(s.Command) > 0 {
		c.WithCommand(s.Command...)
	}
	if len(s.Args) > 0 {
		c.WithArgs(s.Args...)
	}
	for _, p := range r.ports() {
		c.WithPorts(corev1ac.ContainerPort().WithName(portName(p)).
			WithContainerPort(p.num).WithProtocol(corev1.Protocol(p.proto)))
	}
	var hasCM, hasSecret bool
	for _, e := range s.Env {
		hasSecret = hasSecret || e.Secret
		hasCM = hasCM || !e.Secret
	}
	if hasCM {
		c.WithEnvFrom(corev1ac.EnvFromSource().WithConfigMapRef(corev1ac.ConfigMapEnvSource().WithName(r.envName())))
	}
	if hasSecret {
		c.WithEnvFrom(corev1ac.EnvFromSource().WithSecretRef(corev1ac.SecretEnvSource().WithName(r.envName())))
	}
	if res := r.resources(); res != nil {
		c.WithResources(res)
	}
	if rp, lp := r.probes(); rp != nil {
		c.WithReadinessProbe(rp).WithLivenessProbe(lp)
	}
	if s.Volume != nil {
		c.WithVolumeMounts(corev1ac.VolumeMount().WithName("data").WithMountPath(s.Volume.Path))
	}
	meta := metav1ac.ObjectMeta().WithLabels(r.labels)
	if r.envHash != "" {
		meta.WithAnnotations(map[string]string{AnnotationEnvHash: r.envHash})
	}
	return &corev1ac.PodTemplateSpecApplyConfiguration{
		ObjectMetaApplyConfiguration: meta,
		Spec:                         corev1ac.PodSpec().WithContainers(c),
	}
}

func (r *renderer) resources() *corev1ac.ResourceRequirementsApplyConfiguration {
	req, lim := corev1.ResourceList{}, corev1.ResourceList{}
	if res := r.a.Spec.Resources; res != nil {
		if res.CPU != "" {
			req[corev1.ResourceCPU] = resource.MustParse(res.CPU)
		}
		if res.Memory != "" {
			req[corev1.ResourceMemory] = resource.MustParse(res.Memory)
			lim[corev1.ResourceMemory] = resource.MustParse(res.Memory)
		}
	}
	if _, ok := req[corev1.ResourceCPU]; !ok && r.a.Spec.Autoscale != nil {
		req[corev1.ResourceCPU] = resource.MustParse(DefaultAutoscaleCPURequest)
	}
	if len(req) == 0 {
		return nil
	}
	rr := corev1ac.ResourceRequirements().WithRequests(req)
	if len(lim) > 0 {
		rr.WithLimits(lim)
	}
	return rr
}

// probes default to a TCP check of the first port: readiness every 10 s,
// liveness after 10 s with a more patient threshold, so a slow start is
// marked unready before it is restarted.
func (r *renderer) probes() (readiness, liveness *corev1ac.ProbeApplyConfiguration) {
	h := r.a.Spec.Health
	if h != nil && h.Disabled {
		return nil, nil
	}
	var num int32
	if ps := r.ports(); len(ps) > 0 && ps[0].proto == "TCP" {
		num = ps[0].num
	}
	if h != nil && h.Port != 0 {
		num = h.Port
	}
	if num == 0 {
		return nil, nil
	}
	handler := func(p *corev1ac.ProbeApplyConfiguration) *corev1ac.ProbeApplyConfiguration {
		if h != nil && h.Path != "" {
			return p.WithHTTPGet(corev1ac.HTTPGetAction().WithPath(h.Path).WithPort(intstr.FromInt32(num)))
		}
		return p.WithTCPSocket(corev1ac.TCPSocketAction().WithPort(intstr.FromInt32(num)))
	}
	readiness = handler(corev1ac.Probe()).WithPeriodSeconds(10).WithTimeoutSeconds(2).WithFailureThreshold(3)
	liveness = handler(corev1ac.Probe()).WithInitialDelaySeconds(10).WithPeriodSeconds(10).WithTimeoutSeconds(2).WithFailureThreshold(6)
	return readiness, liveness
}

func (r *renderer) selector() *metav1ac.LabelSelectorApplyConfiguration {
	return metav1ac.LabelSelector().WithMatchLabels(map[string]string{LabelApp: r.a.Name})
}

func (r *renderer) replicas() *int32 {
	if r.a.Spec.Autoscale != nil {
		return nil // the HorizontalPodAutoscaler owns the field
	}
	if r.a.Spec.Replicas != nil {
		n := *r.a.Spec.Replicas
		return &n
	}
	n := int32(DefaultReplicas)
	return &n
}

func (r *renderer) deployment() *appsv1ac.DeploymentApplyConfiguration {
	d := appsv1ac.Deployment(r.a.Name, r.a.Namespace)
	d.ObjectMetaApplyConfiguration = r.meta()
	spec := appsv1ac.DeploymentSpec().WithSelector(r.selector()).WithTemplate(r.podTemplate())
	if n := r.replicas(); n != nil {
		spec.WithReplicas(*n)
	}
	return d.WithSpec(spec)
}

func (r *renderer) statefulSet() *appsv1ac.StatefulSetApplyConfiguration {
	v := r.a.Spec.Volume
	size := v.Size
	if size == "" {
		size = DefaultVolumeSize
	}
	pvc := (&corev1ac.PersistentVolumeClaimApplyConfiguration{}).
		WithName("data").
		WithSpec(corev1ac.PersistentVolumeClaimSpec().
			WithAccessModes(corev1.ReadWriteOnce).
			WithResources(corev1ac.VolumeResourceRequirements().
				WithRequests(corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)})))
	pvc.WithLabels(r.labels)
	if v.StorageClassName != "" {
		pvc.Spec.WithStorageClassName(v.StorageClassName)
	}
	s := appsv1ac.StatefulSet(r.a.Name, r.a.Namespace)
	s.ObjectMetaApplyConfiguration = r.meta()
	spec := appsv1ac.StatefulSetSpec().
		WithServiceName(r.a.Name).
		WithSelector(r.selector()).
		WithTemplate(r.podTemplate()).
		WithVolumeClaimTemplates(pvc)
	if n := r.replicas(); n != nil {
		spec.WithReplicas(*n)
	}
	return s.WithSpec(spec)
}

func (r *renderer) service() *corev1ac.ServiceApplyConfiguration {
	s := corev1ac.Service(r.a.Name, r.a.Namespace)
	s.ObjectMetaApplyConfiguration = r.meta()
	spec := corev1ac.ServiceSpec().WithSelector(map[string]string{LabelApp: r.a.Name})
	for _, p := range r.ports() {
		spec.WithPorts(corev1ac.ServicePort().WithName(portName(p)).WithPort(p.num).
			WithProtocol(corev1.Protocol(p.proto)).WithTargetPort(intstr.FromString(portName(p))))
	}
	return s.WithSpec(spec)
}

// exposedPort is the Service port the Ingress routes to.
func (r *renderer) exposedPort() int32 {
	if x := r.a.Spec.Expose; x != nil && x.Port != 0 {
		return x.Port
	}
	if ps := r.ports(); len(ps) > 0 {
		return ps[0].num
	}
	return 0
}

func (r *renderer) ingress() *networkingv1ac.IngressApplyConfiguration {
	x := r.a.Spec.Expose
	path := x.Path
	if path == "" {
		path = "/"
	}
	in := networkingv1ac.Ingress(r.a.Name, r.a.Namespace)
	in.ObjectMetaApplyConfiguration = r.meta()
	spec := networkingv1ac.IngressSpec().WithRules(networkingv1ac.IngressRule().
		WithHost(x.Host).
		WithHTTP(networkingv1ac.HTTPIngressRuleValue().WithPaths(networkingv1ac.HTTPIngressPath().
			WithPath(path).WithPathType(networkingv1.PathTypePrefix).
			WithBackend(networkingv1ac.IngressBackend().WithService(networkingv1ac.IngressServiceBackend().
				WithName(r.a.Name).WithPort(networkingv1ac.ServiceBackendPort().WithNumber(r.exposedPort())))))))
	if x.IngressClassName != "" {
		spec.WithIngressClassName(x.IngressClassName)
	}
	if x.TLSSecretName != "" {
		spec.WithTLS(networkingv1ac.IngressTLS().WithHosts(x.Host).WithSecretName(x.TLSSecretName))
	}
	return in.WithSpec(spec)
}

func (r *renderer) hpa() *autoscalingv2ac.HorizontalPodAutoscalerApplyConfiguration {
	as := r.a.Spec.Autoscale
	cpu := as.CPU
	if cpu == 0 {
		cpu = DefaultCPUPercent
	}
	kind := "Deployment"
	if r.a.Spec.Volume != nil {
		kind = "StatefulSet"
	}
	h := autoscalingv2ac.HorizontalPodAutoscaler(r.a.Name, r.a.Namespace)
	h.ObjectMetaApplyConfiguration = r.meta()
	return h.WithSpec(autoscalingv2ac.HorizontalPodAutoscalerSpec().
		WithScaleTargetRef(autoscalingv2ac.CrossVersionObjectReference().
			WithAPIVersion("apps/v1").WithKind(kind).WithName(r.a.Name)).
		WithMinReplicas(as.Min).WithMaxReplicas(as.Max).
		WithMetrics(autoscalingv2ac.MetricSpec().WithType("Resource").
			WithResource(autoscalingv2ac.ResourceMetricSource().WithName(corev1.ResourceCPU).
				WithTarget(autoscalingv2ac.MetricTarget().WithType("Utilization").WithAverageUtilization(cpu)))))
}

func (r *renderer) pdb() *policyv1ac.PodDisruptionBudgetApplyConfiguration {
	d := r.a.Spec.Disruption
	p := policyv1ac.PodDisruptionBudget(r.a.Name, r.a.Namespace)
	p.ObjectMetaApplyConfiguration = r.meta()
	spec := policyv1ac.PodDisruptionBudgetSpec().WithSelector(r.selector())
	if d.MinAvailable != nil {
		spec.WithMinAvailable(*d.MinAvailable)
	}
	if d.MaxUnavailable != nil {
		spec.WithMaxUnavailable(*d.MaxUnavailable)
	}
	return p.WithSpec(spec)
}

// URL is where the App is reachable: the Ingress URL when exposed, the
// in-cluster Service URL when it has ports, otherwise empty.
func URL(a *App) string {
	if x := a.Spec.Expose; x != nil {
		scheme := "http"
		if x.TLSSecretName != "" {
			scheme = "https"
		}
		path := x.Path
		if path == "" {
			path = "/"
		}
		return scheme + "://" + x.Host + path
	}
	if len(a.Spec.Ports) == 0 {
		return ""
	}
	n, proto, err := a.Spec.Ports[0].Parse()
	if err != nil {
		return ""
	}
	scheme := "http"
	if proto != "TCP" {
		scheme = strings.ToLower(proto)
	}
	return fmt.Sprintf("%s://%s.%s.svc:%d", scheme, a.Name, a.Namespace, n)
}
