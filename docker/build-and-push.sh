#!/usr/bin/env bash
# Build the task image and the Airflow image, tag them, and push them to Amazon ECR.
#
#   docker/build-and-push.sh --account 123456789012 --region eu-west-1 --repository nlp [--tag TAG]
#                            [--platform linux/amd64] [--with-local] [--no-push]
#
# Pushes, to ACCOUNT.dkr.ecr.REGION.amazonaws.com:
#   REPOSITORY/tasks:TAG              target task            (uid 1000): Variable nlp_task_image (nlp_eks)
#   REPOSITORY/tasks:TAG-sagemaker    target task-sagemaker  (root):     Variable nlp_sagemaker_image
#   REPOSITORY/airflow:TAG            target airflow         (providers, dags, plugins)
#   REPOSITORY/airflow:TAG-local      target airflow-local   (adds the tasks package), with --with-local
# Missing repositories are created (scan on push). TAG defaults to VERSION-COMMIT (pyproject.toml, git).
# Credentials are the AWS CLI's own (environment, profile, SSO or instance role); none are written here.
set -euo pipefail

usage() {
    sed -n '2,15s/^# \{0,1\}//p' "$0"
    exit "${1:-2}"
}

fail() {
    echo "build-and-push: $*" >&2
    exit 2
}

account="" region="" repository="" tag="" platform="linux/amd64" with_local=false push=true
while [ "$#" -gt 0 ]; do
    case "$1" in
        --account) account="${2:-}"; shift 2 || fail "--account needs a value" ;;
        --region) region="${2:-}"; shift 2 || fail "--region needs a value" ;;
        --repository) repository="${2:-}"; shift 2 || fail "--repository needs a value" ;;
        --tag) tag="${2:-}"; shift 2 || fail "--tag needs a value" ;;
        --platform) platform="${2:-}"; shift 2 || fail "--platform needs a value" ;;
        --with-local) with_local=true; shift ;;
        --no-push) push=false; shift ;;
        -h | --help) usage 0 ;;
        *) fail "unknown argument '$1' (see --help)" ;;
    esac
done

[[ "$account" =~ ^[0-9]{12}$ ]] || fail "--account must be a 12-digit AWS account id, got '$account'"
[[ "$region" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]] || fail "--region must be an AWS region such as eu-west-1, got '$region'"
[[ "$repository" =~ ^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$ ]] \
    || fail "--repository must be an ECR repository name (lowercase, digits, . _ - /), got '$repository'"
for tool in docker aws git; do
    command -v "$tool" > /dev/null || fail "'$tool' is not on PATH"
done

cd "$(dirname "$0")/.."
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)"
revision="$(git rev-parse HEAD)"
source_url="$(git remote get-url origin 2> /dev/null || echo unknown)"
tag="${tag:-$version-$(git rev-parse --short=12 HEAD)}"
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || fail "--tag must be a Docker tag, got '$tag'"
domain="amazonaws.com"
[[ "$region" == cn-* ]] && domain="amazonaws.com.cn"
registry="$account.dkr.ecr.$region.$domain"

# image name, Dockerfile, target, tag suffix
images=(
    "tasks docker/task/Dockerfile task -"
    "tasks docker/task/Dockerfile task-sagemaker -sagemaker"
    "airflow docker/airflow/Dockerfile airflow -"
)
if [ "$with_local" = true ]; then
    images+=("airflow docker/airflow/Dockerfile airflow-local -local")
fi

built=()
for image in "${images[@]}"; do
    read -r name dockerfile target suffix <<< "$image"
    [ "$suffix" = "-" ] && suffix=""
    uri="$registry/$repository/$name:$tag$suffix"
    echo "build-and-push: building $uri (target $target of $dockerfile)"
    docker build --platform "$platform" --file "$dockerfile" --target "$target" \
        --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=$source_url" \
        --tag "$uri" .
    built+=("$uri")
done

if [ "$push" = true ]; then
    for name in tasks airflow; do
        aws ecr describe-repositories --region "$region" --registry-id "$account" \
            --repository-names "$repository/$name" > /dev/null 2>&1 \
            || aws ecr create-repository --region "$region" --registry-id "$account" \
                --repository-name "$repository/$name" --image-scanning-configuration scanOnPush=true > /dev/null
    done
    aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
    for uri in "${built[@]}"; do
        docker push "$uri"
    done
fi

echo "build-and-push: $([ "$push" = true ] && echo pushed || echo built):"
printf '  %s\n' "${built[@]}"
