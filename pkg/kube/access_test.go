package kube

import (
	"context"
	"slices"
	"testing"

	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestRulesAllow(t *testing.T) {
	rules := []authzv1.ResourceRule{
		{Verbs: []string{"get", "list"}, APIGroups: []string{"apps"}, Resources: []string{"deployments"}},
		{Verbs: []string{"patch"}, APIGroups: []string{"apps"}, Resources: []string{"deployments"}, ResourceNames: []string{"web"}},
		{Verbs: []string{"*"}, APIGroups: []string{""}, Resources: []string{"pods/*"}},
		{Verbs: []string{"update"}, APIGroups: []string{"*"}, Resources: []string{"*/scale"}},
	}
	for _, tt := range []struct {
		a    Access
		want bool
	}{
		{Access{Verb: "get", Group: "apps", Resource: "deployments"}, true},
		{Access{Verb: "watch", Group: "apps", Resource: "deployments"}, false},
		{Access{Verb: "patch", Group: "apps", Resource: "deployments"}, false}, // only one named Deployment
		{Access{Verb: "patch", Group: "apps", Resource: "deployments", Name: "web"}, true},
		{Access{Verb: "patch", Group: "apps", Resource: "deployments", Name: "db"}, false},
		{Access{Verb: "get", Group: "", Resource: "deployments"}, false},
		{Access{Verb: "create", Resource: "pods", Subresource: "eviction"}, true},
		{Access{Verb: "list", Resource: "pods"}, false}, // pods/* is subresources only
		{Access{Verb: "update", Group: "apps", Resource: "statefulsets", Subresource: "scale"}, true},
	} {
		if got := RulesAllow(rules, tt.a); got != tt.want {
			t.Errorf("RulesAllow(%s) = %v, want %v", tt.a, got, tt.want)
		}
	}
}

// A namespace with several accesses is asked once for its rules; what they do not grant is asked
// one by one, and a denial there is still reported.
func TestMissingAsksRulesOncePerNamespace(t *testing.T) {
	k := fake.NewClientset()
	var ssar, ssrr int
	k.PrependReactor("create", "selfsubjectrulesreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		ssrr++
		return true, &authzv1.SelfSubjectRulesReview{Status: authzv1.SubjectRulesReviewStatus{ResourceRules: []authzv1.ResourceRule{
			{Verbs: []string{"get", "patch"}, APIGroups: []string{"apps"}, Resources: []string{"deployments"}}}}}, nil
	})
	k.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ssar++
		r := a.(k8stesting.CreateAction).GetObject().(*authzv1.SelfSubjectAccessReview)
		r.Status.Allowed = r.Spec.ResourceAttributes.Verb != "delete"
		return true, r, nil
	})
	want := []Access{
		{Verb: "get", Group: "apps", Resource: "deployments", Namespace: "a"},
		{Verb: "patch", Group: "apps", Resource: "deployments", Namespace: "a"},
		{Verb: "delete", Group: "apps", Resource: "deployments", Namespace: "a"},
		{Verb: "get", Group: "apps", Resource: "deployments", Namespace: "b"},
		{Verb: "patch", Group: "apps", Resource: "deployments", Namespace: "b"},
		{Verb: "list", Resource: "namespaces"},
	}
	missing, err := Missing(context.Background(), k, want)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(missing, []Access{want[2]}) {
		t.Errorf("missing %v, want only %s", missing, want[2])
	}
	if ssrr != 2 || ssar != 2 {
		t.Errorf("%d rules reviews and %d access reviews, want 2 (one per namespace) and 2 (the delete, the cluster-wide list)", ssrr, ssar)
	}
}
