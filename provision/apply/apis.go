package apply

import (
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Stability is how stable an API version is: "stable" (v1, v2), "beta"
// (v1beta1) or "alpha" (v1alpha1).
type Stability string

// The stabilities, in decreasing order of trust.
const (
	Stable Stability = "stable"
	Beta   Stability = "beta"
	Alpha  Stability = "alpha"
)

var versionRE = regexp.MustCompile(`^v[1-9][0-9]*(?:(alpha|beta)[1-9][0-9]*)?$`)

// VersionStability classifies a version such as v1beta2 (not a group/version).
// A version that does not follow Kubernetes conventions is treated as alpha:
// nothing promises it will stay.
func VersionStability(version string) Stability {
	m := versionRE.FindStringSubmatch(version)
	switch {
	case m == nil:
		return Alpha
	case m[1] == "":
		return Stable
	case m[1] == "beta":
		return Beta
	}
	return Alpha
}

// IsGroupOnly reports whether an apiVersion names only a group
// ("events.k8s.io", "velero.io"): k2 then picks the stable version in it.
func IsGroupOnly(apiVersion string) bool {
	return apiVersion != "" && !strings.Contains(apiVersion, "/") && !isVersion(apiVersion)
}

// isVersion reports whether s looks like a bare version (v1, v2beta1), as
// opposed to a group name given as apiVersion to stay versionless in a group.
func isVersion(s string) bool { return versionRE.MatchString(s) }

// KnownAPI is an API version Kubernetes deprecated or removed, and its
// stable replacement.
type KnownAPI struct {
	APIVersion  string `json:"apiVersion"`
	Kind        string `json:"kind"`
	Replacement string `json:"replacement,omitempty"` // apiVersion; empty: none, see Note
	RemovedIn   string `json:"removedIn,omitempty"`   // Kubernetes minor version; empty: still served
	Note        string `json:"note,omitempty"`
}

// knownAPIs lists the API versions Kubernetes has removed or superseded
// with a stable one, from the Kubernetes deprecation guide.
var knownAPIs = func() map[schema.GroupVersionKind]KnownAPI {
	m := map[schema.GroupVersionKind]KnownAPI{}
	add := func(apiVersions, kinds, replacement, removedIn, note string) {
		for _, av := range strings.Fields(apiVersions) {
			for _, k := range strings.Fields(kinds) {
				gv, _ := schema.ParseGroupVersion(av)
				m[gv.WithKind(k)] = KnownAPI{APIVersion: av, Kind: k, Replacement: replacement, RemovedIn: removedIn, Note: note}
			}
		}
	}
	add("extensions/v1beta1", "Ingress", "networking.k8s.io/v1", "1.22", "")
	add("extensions/v1beta1", "Deployment DaemonSet ReplicaSet", "apps/v1", "1.16", "")
	add("extensions/v1beta1", "NetworkPolicy", "networking.k8s.io/v1", "1.16", "")
	add("extensions/v1beta1 policy/v1beta1", "PodSecurityPolicy", "", "1.25", "use Pod Security Admission (namespace labels pod-security.kubernetes.io/*)")
	add("apps/v1beta1 apps/v1beta2", "Deployment StatefulSet DaemonSet ReplicaSet ControllerRevision", "apps/v1", "1.16", "")
	add("networking.k8s.io/v1beta1", "Ingress IngressClass", "networking.k8s.io/v1", "1.22", "")
	add("networking.k8s.io/v1alpha1", "ClusterCIDR", "", "1.29", "removed without replacement")
	add("networking.k8s.io/v1alpha1 networking.k8s.io/v1beta1", "IPAddress ServiceCIDR", "networking.k8s.io/v1", "", "")
	add("policy/v1beta1", "PodDisruptionBudget", "policy/v1", "1.25", "")
	add("batch/v1beta1 batch/v2alpha1", "CronJob", "batch/v1", "1.25", "")
	add("autoscaling/v2beta1", "HorizontalPodAutoscaler", "autoscaling/v2", "1.25", "")
	add("autoscaling/v2beta2", "HorizontalPodAutoscaler", "autoscaling/v2", "1.26", "")
	add("rbac.authorization.k8s.io/v1alpha1 rbac.authorization.k8s.io/v1beta1", "Role ClusterRole RoleBinding ClusterRoleBinding", "rbac.authorization.k8s.io/v1", "1.22", "")
	add("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition", "apiextensions.k8s.io/v1", "1.22", "")
	add("apiregistration.k8s.io/v1beta1", "APIService", "apiregistration.k8s.io/v1", "1.22", "")
	add("admissionregistration.k8s.io/v1beta1", "MutatingWebhookConfiguration ValidatingWebhookConfiguration", "admissionregistration.k8s.io/v1", "1.22", "")
	add("admissionregistration.k8s.io/v1alpha1 admissionregistration.k8s.io/v1beta1", "ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding", "admissionregistration.k8s.io/v1", "", "")
	add("authentication.k8s.io/v1beta1", "TokenReview", "authentication.k8s.io/v1", "1.22", "")
	add("authentication.k8s.io/v1alpha1 authentication.k8s.io/v1beta1", "SelfSubjectReview", "authentication.k8s.io/v1", "", "")
	add("authorization.k8s.io/v1beta1", "SubjectAccessReview LocalSubjectAccessReview SelfSubjectAccessReview SelfSubjectRulesReview", "authorization.k8s.io/v1", "1.22", "")
	add("certificates.k8s.io/v1beta1", "CertificateSigningRequest", "certificates.k8s.io/v1", "1.22", "")
	add("coordination.k8s.io/v1beta1", "Lease", "coordination.k8s.io/v1", "1.22", "")
	add("scheduling.k8s.io/v1alpha1 scheduling.k8s.io/v1beta1", "PriorityClass", "scheduling.k8s.io/v1", "1.22", "")
	add("storage.k8s.io/v1beta1", "StorageClass VolumeAttachment CSIDriver CSINode", "storage.k8s.io/v1", "1.22", "")
	add("storage.k8s.io/v1alpha1 storage.k8s.io/v1beta1", "CSIStorageCapacity", "storage.k8s.io/v1", "1.27", "")
	add("storage.k8s.io/v1alpha1 storage.k8s.io/v1beta1", "VolumeAttributesClass", "storage.k8s.io/v1", "", "")
	add("discovery.k8s.io/v1beta1", "EndpointSlice", "discovery.k8s.io/v1", "1.25", "")
	add("events.k8s.io/v1beta1", "Event", "events.k8s.io/v1", "1.25", "")
	add("node.k8s.io/v1alpha1 node.k8s.io/v1beta1", "RuntimeClass", "node.k8s.io/v1", "1.25", "")
	add("flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema PriorityLevelConfiguration", "flowcontrol.apiserver.k8s.io/v1", "1.26", "")
	add("flowcontrol.apiserver.k8s.io/v1beta2", "FlowSchema PriorityLevelConfiguration", "flowcontrol.apiserver.k8s.io/v1", "1.29", "")
	add("flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema PriorityLevelConfiguration", "flowcontrol.apiserver.k8s.io/v1", "1.32", "")
	add("resource.k8s.io/v1alpha3 resource.k8s.io/v1beta1 resource.k8s.io/v1beta2", "ResourceClaim ResourceClaimTemplate DeviceClass ResourceSlice", "resource.k8s.io/v1", "", "")
	return m
}()

// LookupKnownAPI returns what k2 knows about a deprecated or removed API.
func LookupKnownAPI(gvk schema.GroupVersionKind) (KnownAPI, bool) {
	k, ok := knownAPIs[gvk]
	return k, ok
}
