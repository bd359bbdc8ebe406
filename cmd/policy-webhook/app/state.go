package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/quota"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// StateObjects are the webhook's own state in its namespace: the objects
// only it may write.
func StateObjects() []webhook.StateObject {
	return []webhook.StateObject{
		{Resource: "configmaps", Name: cache.LastGoodConfigMap, What: "the persisted last good versions of invalid policies"},
		{Resource: "secrets", Name: cache.LastGoodKeySecret, What: "the key the persisted last good versions are signed with"},
		{Resource: "configmaps", Name: quota.LedgerPrefix, Prefix: true, What: "a quota ledger of MyApple reservations"},
	}
}

// newStateHandler is the handler that refuses writes of the webhook's state
// by anyone but the webhook itself.
func newStateHandler(ctx context.Context, kube kubernetes.Interface, opts Options, m *webhook.Metrics) (http.Handler, error) {
	user := opts.Username
	if user == "" {
		var err error
		if user, err = whoAmI(ctx, kube); err != nil {
			return nil, err
		}
	}
	opts.Log.Info("Writes of the webhook's own state are allowed to this user only", "user", user, "namespace", opts.PolicyNamespace)
	return webhook.NewStateHandler(webhook.StateOptions{
		Namespace: opts.PolicyNamespace, Username: user, Objects: StateObjects(),
		Metrics: m, Log: opts.Log.WithName("admission").WithName("state"),
	})
}

// whoAmI asks the API server which user this webhook's credentials are
// (what `kubectl auth whoami` asks): every authenticated user may.
func whoAmI(ctx context.Context, kube kubernetes.Interface) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var user string
	var last error
	// Retried: the API server may be starting along with the webhook.
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		r, err := kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			last = err
			return false, nil
		}
		user = r.Status.UserInfo.Username
		return true, nil
	})
	if err != nil || user == "" {
		return "", fmt.Errorf("asking the API server which user this webhook is (set --username to skip this): %w", errors.Join(err, last))
	}
	return user, nil
}
