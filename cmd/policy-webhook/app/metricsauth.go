package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	authenticationv1 "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1 "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// authenticateAndAuthorize is controller-runtime's
// filters.WithAuthenticationAndAuthorization (TokenReview, then
// SubjectAccessReview, results cached) with the answers a client can act
// on: a token the API server does not authenticate is 401, where
// controller-runtime answers 500 whenever the TokenReview carries an error
// (as it does for a malformed token); only an API server that cannot be
// asked is a server-side failure, 503, which the scraper retries.
func authenticateAndAuthorize(cfg *rest.Config, hc *http.Client) (metricsserver.Filter, error) {
	authn, err := authenticationv1.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, fmt.Errorf("creating the TokenReview client: %w", err)
	}
	authz, err := authorizationv1.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, fmt.Errorf("creating the SubjectAccessReview client: %w", err)
	}
	// apiserver's DefaultAuthWebhookRetryBackoff, as controller-runtime copies it.
	backoff := wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}
	authenticator, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
		Anonymous:                &apiserver.AnonymousAuthConfig{Enabled: false},
		CacheTTL:                 time.Minute,
		TokenAccessReviewClient:  authn,
		TokenAccessReviewTimeout: 10 * time.Second,
		WebhookRetryBackoff:      &backoff,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("creating the metrics authenticator: %w", err)
	}
	authorizerConfig := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: authz,
		AllowCacheTTL:             5 * time.Minute,
		DenyCacheTTL:              30 * time.Second,
		WebhookRetryBackoff:       &backoff,
	}
	authorize, err := authorizerConfig.New()
	if err != nil {
		return nil, fmt.Errorf("creating the metrics authorizer: %w", err)
	}
	return func(log logr.Logger, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			res, ok, err := authenticator.AuthenticateRequest(req)
			switch {
			case err != nil && unreachable(err):
				log.Error(err, "Cannot authenticate a metrics scrape: the API server's TokenReview failed")
				http.Error(w, "Service Unavailable: the API server could not review the token; retry", http.StatusServiceUnavailable)
				return
			case !ok:
				// Rejected, malformed or missing: the API server's own answer to such a token.
				log.V(4).Info("Metrics scrape not authenticated", "reason", fmt.Sprint(err))
				http.Error(w, "Unauthorized", http.StatusUnauthorized)
				return
			}
			attrs := authorizer.AttributesRecord{User: res.User, Verb: strings.ToLower(req.Method), Path: req.URL.Path}
			decision, reason, err := authorize.Authorize(req.Context(), attrs)
			if err != nil {
				code := http.StatusInternalServerError
				if unreachable(err) {
					code = http.StatusServiceUnavailable
				}
				log.Error(err, "Cannot authorize a metrics scrape", "user", res.User.GetName())
				http.Error(w, fmt.Sprintf("authorizing user %s failed; retry", res.User.GetName()), code)
				return
			}
			if decision != authorizer.DecisionAllow {
				log.V(4).Info("Metrics scrape not authorized", "user", res.User.GetName(), "reason", reason)
				http.Error(w, "Forbidden: user "+res.User.GetName()+" may not get "+req.URL.Path, http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, req)
		}), nil
	}, nil
}

// unreachable reports whether err is the API server failing to answer a
// review (a transport error, a timeout, an API error status), as opposed to
// its answer that the token is not valid, which carries a plain error.
func unreachable(err error) bool {
	var agg utilerrors.Aggregate
	if errors.As(err, &agg) {
		for _, e := range agg.Errors() {
			if unreachable(e) {
				return true
			}
		}
		return false
	}
	var status apierrors.APIStatus
	var urlErr *url.Error
	var netErr net.Error
	return errors.As(err, &status) || errors.As(err, &urlErr) || errors.As(err, &netErr) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		strings.HasPrefix(err.Error(), "webhook call failed: ") // apiserver's WithExponentialBackoff out of time
}
