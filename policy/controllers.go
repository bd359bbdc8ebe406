package policy

// Pod controllers: objects that create Pods from a template. Each is judged
// at its own admission by the Pod its template describes, so a bad rollout
// is refused where its author looks instead of as FailedCreate Events on a
// ReplicaSet.
const (
	KindDeployment            = "Deployment"
	KindReplicaSet            = "ReplicaSet"
	KindStatefulSet           = "StatefulSet"
	KindDaemonSet             = "DaemonSet"
	KindJob                   = "Job"
	KindCronJob               = "CronJob"
	KindReplicationController = "ReplicationController"
)

// Template paths of the Pod a controller creates.
const (
	templatePath        = "spec.template"
	cronJobTemplatePath = "spec.jobTemplate.spec.template"
)

// PodController is a kind of object judged by its Pod template.
type PodController struct {
	Kind     Kind
	Group    string
	Version  string
	Resource string
	// Template is the field path of the Pod template in the object.
	Template string
}

// PodControllers are the kinds judged by their Pod template, in the order
// the audit reads them.
func PodControllers() []PodController {
	kinds := []Kind{KindDeployment, KindReplicaSet, KindStatefulSet, KindDaemonSet, KindJob, KindCronJob, KindReplicationController}
	out := make([]PodController, len(kinds))
	for i, k := range kinds {
		out[i], _ = PodControllerOf(k)
	}
	return out
}

// PodControllerOf returns the PodController of kind, if it is one.
func PodControllerOf(kind Kind) (PodController, bool) {
	switch kind {
	case KindDeployment:
		return PodController{kind, "apps", "v1", "deployments", templatePath}, true
	case KindReplicaSet:
		return PodController{kind, "apps", "v1", "replicasets", templatePath}, true
	case KindStatefulSet:
		return PodController{kind, "apps", "v1", "statefulsets", templatePath}, true
	case KindDaemonSet:
		return PodController{kind, "apps", "v1", "daemonsets", templatePath}, true
	case KindJob:
		return PodController{kind, "batch", "v1", "jobs", templatePath}, true
	case KindCronJob:
		return PodController{kind, "batch", "v1", "cronjobs", cronJobTemplatePath}, true
	case KindReplicationController:
		return PodController{kind, "", "v1", "replicationcontrollers", templatePath}, true
	}
	return PodController{}, false
}

// APIVersion is the controller's group/version, as objects carry it.
func (c PodController) APIVersion() string {
	if c.Group == "" {
		return c.Version
	}
	return c.Group + "/" + c.Version
}

// Controller is the Pod controller whose template is the Pod of a request.
type Controller struct {
	PodController
	Meta ObjectMeta
}

// field is a path in the template's Pod as a path in the controller.
func (c *Controller) field(f string) string {
	if f == "" {
		return ""
	}
	return c.Template + "." + f
}
