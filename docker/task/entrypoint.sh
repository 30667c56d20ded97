#!/bin/sh
# The task image's entrypoint, installed as /usr/local/bin/nlp-task-entrypoint and started by dumb-init
# (PID 1), which forwards SIGTERM to the step and reaps what it leaves behind. Every argument list
# becomes `python -m tasks ARGS`:
#   train            a SageMaker training job: the train step reads the job's files under /opt/ml
#   serve [FLAGS]    SageMaker hosting (model in /opt/ml/model, port $SAGEMAKER_BIND_TO_PORT or 8080)
#                    and the Kubernetes Deployment (serve --model URI --host 0.0.0.0)
#   STEP [FLAGS]     any other step, as SageMaker Processing jobs and Kubernetes pods run them
# Thread pools follow the CPUs the container may use (its cgroup quota and CPU set, not the host's);
# a setting already in the environment (a pod's OMP_NUM_THREADS from limits.cpu) is kept.
set -eu

if [ "$#" -eq 0 ]; then
    echo "usage: nlp-task-entrypoint train | serve [FLAGS] | STEP [FLAGS]   (python -m tasks --help)" >&2
    exit 2
fi

thread_settings="$(python -m tasks cpu-threads)"
eval "$thread_settings"

echo "nlp-task-entrypoint: python -m tasks $1, $OMP_NUM_THREADS CPU thread(s)" >&2
exec python -m tasks "$@"
