package app

import (
	"context"
	"errors"
	"fmt"
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
// by anyone but the webhook. Without --username it asks the API server who
// it is in the background, so that starting never waits on the API server;
// until it knows, writes of its state by others are refused as retryable.
func newStateHandler(ctx context.Context, kube kubernetes.Interface, opts Options, m *webhook.Metrics) (*webhook.StateHandler, error) {
	log := opts.Log.WithName("admission").WithName("state")
	h, err := webhook.NewStateHandler(webhook.StateOptions{
		Namespace: opts.PolicyNamespace, Username: opts.Username, Objects: StateObjects(), Metrics: m, Log: log,
	})
	if err != nil {
		return nil, err
	}
	if opts.Username != "" {
		log.Info("Writes of the webhook's own state are allowed to this user only", "user", opts.Username, "namespace", opts.PolicyNamespace)
		return h, nil
	}
	go func() {
		user, err := whoAmI(ctx, kube)
		if err != nil {
			if ctx.Err() == nil {
				log.Error(err, "Cannot learn which user this webhook is: writes of its state stay refused")
			}
			return
		}
		h.SetUsername(user)
		log.Info("Writes of the webhook's own state are allowed to this user only", "user", user, "namespace", opts.PolicyNamespace)
	}()
	return h, nil
}

// whoAmI asks the API server which user this webhook's credentials are
// (what `kubectl auth whoami` asks): every authenticated user may. It
// retries until it has an answer or ctx ends: the API server may be
// starting along with the webhook, or away for a while.
func whoAmI(ctx context.Context, kube kubernetes.Interface) (string, error) {
	var user string
	var last error
	backoff := wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Steps: 1 << 30, Cap: 10 * time.Second}
	err := wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		r, err := kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			last = err
			return false, nil //nolint:nilerr // retried until ctx ends; last is reported then
		}
		user = r.Status.UserInfo.Username
		return user != "", nil
	})
	if err != nil {
		return "", fmt.Errorf("asking the API server which user this webhook is (set --username to skip this): %w", errors.Join(err, last))
	}
	return user, nil
}
