/**
 * infra/k8s: every manifest, and each overlay as rendered, is checked against the Kubernetes,
 * KEDA and prometheus-operator schemas (kubernetes-models); the kustomizations name files that
 * exist; the ConfigMap and Secret carry every setting of the config schema, with values each
 * role accepts; and the worker's shutdown, probes, GPU and autoscaling settings hold together.
 * The overlays are rendered by a small kustomize (resources, patches, namespace, images,
 * labels) that is compared with `kubectl kustomize` where kubectl is installed.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1";
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import * as apps from "kubernetes-models/apps/v1";
import * as policy from "kubernetes-models/policy/v1";
import * as core from "kubernetes-models/v1";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { CONFIG_VARIABLES, loadConfig } from "../../shared/io/config.ts";
import { DEFAULT_GRACE_MS } from "../../workers/fleet/worker/index.ts";
import { LEFT_OUT, ROLE_CONFIG_PARTS } from "../support/deploy-roles.ts";

const K8S = fileURLToPath(new URL("../../infra/k8s/", import.meta.url));
const OVERLAYS = ["cpu", "gpu"] as const;
/** Arrives from the monitoring branch; the lead adds it to the base kustomization at merge. */
const ARRIVING_ELSEWHERE = new Set(["prometheus-rule.yaml"]);

// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML until a model class checks them
type Doc = Record<string, any>;

/** Model classes by `<kind>.<apiVersion>`. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  "Namespace.v1": core.Namespace,
  "PersistentVolumeClaim.v1": core.PersistentVolumeClaim,
  "ConfigMap.v1": core.ConfigMap,
  "Secret.v1": core.Secret,
  "Service.v1": core.Service,
  "ServiceAccount.v1": core.ServiceAccount,
  "Deployment.apps/v1": apps.Deployment,
  "PodDisruptionBudget.policy/v1": policy.PodDisruptionBudget,
  "ScaledObject.keda.sh/v1alpha1": keda.ScaledObject,
  "PodMonitor.monitoring.coreos.com/v1": monitoring.PodMonitor,
  "ServiceMonitor.monitoring.coreos.com/v1": monitoring.ServiceMonitor,
  "PrometheusRule.monitoring.coreos.com/v1": monitoring.PrometheusRule,
};

function readDocs(file: string): Doc[] {
  return parseAllDocuments(readFileSync(file, "utf8")).map((d) => {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]!.message}`);
    return d.toJS() as Doc;
  });
}

function validate(doc: Doc, where: string): void {
  const key = `${doc.kind}.${doc.apiVersion}`;
  const Model = MODELS[key];
  if (!Model)
    throw new Error(
      `${where}: ${doc.kind} ${doc.metadata?.name}: unknown kind ${key}; expected one of ${Object.keys(MODELS).join(", ")}`,
    );
  try {
    new Model(doc as never).validate();
  } catch (err) {
    throw new Error(`${where}: ${doc.kind} ${doc.metadata?.name}: ${(err as Error).message}`);
  }
}

// ---------------------------------------------------------------------------
// A small kustomize: what these kustomizations use, nothing more.

interface Kustomization {
  resources?: string[];
  patches?: { path: string }[];
  namespace?: string;
  images?: { name: string; newName?: string; newTag?: string }[];
  labels?: { pairs: Record<string, string> }[];
}

const isObject = (v: unknown): v is Doc => typeof v === "object" && v !== null && !Array.isArray(v);
const isNamedList = (v: unknown): v is Doc[] => Array.isArray(v) && v.every((x) => isObject(x) && typeof x.name === "string");

/** Strategic merge as kustomize does it for these patches: maps merge, lists of named items merge by name. */
function merge(base: unknown, patch: unknown): unknown {
  if (isNamedList(base) && isNamedList(patch)) {
    const out: Doc[] = base.map((x) => structuredClone(x));
    for (const p of patch) {
      const i = out.findIndex((b) => b.name === p.name);
      if (i < 0) out.push(p);
      else out[i] = merge(out[i], p) as Doc;
    }
    return out;
  }
  if (isObject(base) && isObject(patch)) {
    const out: Doc = { ...base };
    for (const [k, v] of Object.entries(patch)) out[k] = k in base ? merge(base[k], v) : v;
    return out;
  }
  return patch;
}

function kustomizationOf(dir: string): Kustomization {
  return readDocs(path.join(dir, "kustomization.yaml"))[0] as Kustomization;
}

function render(dir: string): Doc[] {
  const k = kustomizationOf(dir);
  let docs: Doc[] = [];
  for (const r of k.resources ?? []) {
    const target = path.join(dir, r);
    docs.push(...(statSync(target).isDirectory() ? render(target) : readDocs(target)));
  }
  for (const p of k.patches ?? []) {
    for (const patch of readDocs(path.join(dir, p.path))) {
      const i = docs.findIndex((d) => d.kind === patch.kind && d.metadata.name === patch.metadata.name);
      if (i < 0) throw new Error(`${dir}: patch ${p.path} matches no ${patch.kind} ${patch.metadata.name}`);
      docs[i] = merge(docs[i], patch) as Doc;
    }
  }
  docs = docs.map((d) => {
    const out = structuredClone(d);
    for (const l of k.labels ?? []) out.metadata.labels = { ...out.metadata.labels, ...l.pairs };
    // A Namespace is cluster-scoped: kustomize leaves it without one.
    if (k.namespace !== undefined && out.kind !== "Namespace") out.metadata.namespace = k.namespace;
    for (const c of out.spec?.template?.spec?.containers ?? []) {
      const image = k.images?.find((i) => i.name === c.image);
      if (image) c.image = `${image.newName ?? image.name}${image.newTag !== undefined ? `:${image.newTag}` : ""}`;
    }
    return out;
  });
  return docs;
}

const find = (docs: Doc[], kind: string, name: string): Doc => {
  const d = docs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!d) throw new Error(`no ${kind} ${name}`);
  return d;
};

/** The environment a pod of the rendered overlay gets from its ConfigMap and Secret (envFrom). */
function sharedEnv(docs: Doc[]): Record<string, string> {
  return { ...find(docs, "ConfigMap", "stagebeam-config").data, ...find(docs, "Secret", "stagebeam-secrets").stringData };
}

const hasKubectl = (() => {
  try {
    execFileSync("kubectl", ["version", "--client"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

// ---------------------------------------------------------------------------

describe("infra/k8s", () => {
  const dirs = [path.join(K8S, "base"), ...OVERLAYS.map((o) => path.join(K8S, "overlays", o))];

  it("names only files that exist in each kustomization", () => {
    for (const dir of dirs) {
      const k = kustomizationOf(dir);
      const named = [...(k.resources ?? []), ...(k.patches ?? []).map((p) => p.path)];
      expect(named.length, dir).toBeGreaterThan(0);
      for (const r of named) {
        const target = path.join(dir, r);
        const ok = existsSync(target) && (!statSync(target).isDirectory() || existsSync(path.join(target, "kustomization.yaml")));
        expect(ok || ARRIVING_ELSEWHERE.has(r), `${dir}/kustomization.yaml names ${r}, which does not exist`).toBe(true);
      }
    }
  });

  it("validates every manifest of the base against its schema", () => {
    for (const r of kustomizationOf(path.join(K8S, "base")).resources ?? []) {
      if (ARRIVING_ELSEWHERE.has(r) && !existsSync(path.join(K8S, "base", r))) continue;
      for (const doc of readDocs(path.join(K8S, "base", r))) validate(doc, `base/${r}`);
    }
  });

  it("refuses a kind it has no schema for, naming it", () => {
    expect(() => validate({ apiVersion: "v1", kind: "Pod", metadata: { name: "p" } }, "x.yaml")).toThrow(
      "x.yaml: Pod p: unknown kind Pod.v1",
    );
    const worker = readDocs(path.join(K8S, "base", "worker.yaml"))[0]!;
    expect(() => validate({ ...worker, spec: { ...worker.spec, replicas: "2" } }, "y.yaml")).toThrow(
      /y\.yaml: Deployment stagebeam-worker: .*replicas must be integer/,
    );
  });

  for (const overlay of OVERLAYS) {
    describe(`overlays/${overlay}`, () => {
      const docs = render(path.join(K8S, "overlays", overlay));

      it("renders to manifests that each pass their schema, in the stagebeam namespace, on a pinned image", () => {
        for (const doc of docs) validate(doc, `overlays/${overlay}`);
        const namespaced = docs.filter((d) => d.kind !== "Namespace");
        for (const doc of namespaced) expect(doc.metadata.namespace, `${doc.kind} ${doc.metadata.name}`).toBe("stagebeam");
        // The namespace they live in is created with them.
        expect(docs.filter((d) => d.kind === "Namespace").map((d) => d.metadata.name)).toEqual(["stagebeam"]);
        for (const d of docs.filter((x) => x.kind === "Deployment")) {
          for (const c of d.spec.template.spec.containers)
            expect(c.image, d.metadata.name).toMatch(/^[\w.-]+\/[\w./-]+:[\w.-]+$/);
        }
      });

      it.skipIf(!hasKubectl)("renders exactly as kubectl kustomize does", () => {
        const out = execFileSync("kubectl", ["kustomize", path.join(K8S, "overlays", overlay)], { encoding: "utf8" });
        const real = parseAllDocuments(out).map((d) => d.toJS() as Doc);
        const key = (d: Doc) => `${d.kind}/${d.metadata.name}`;
        const byKey = (list: Doc[]) => Object.fromEntries(list.map((d) => [key(d), d]));
        expect(byKey(docs)).toEqual(byKey(real));
      });

      it("sets every variable of the config schema in the ConfigMap or the Secret, or leaves it out for a stated reason", () => {
        const env = sharedEnv(docs);
        for (const name of CONFIG_VARIABLES) {
          expect(name in env || name in LEFT_OUT, `${name}: in neither stagebeam-config nor stagebeam-secrets`).toBe(true);
          expect(name in env && name in LEFT_OUT, `${name}: set although LEFT_OUT says ${LEFT_OUT[name]}`).toBe(false);
        }
        for (const name of Object.keys(env)) {
          expect(CONFIG_VARIABLES.includes(name), `${name}: not a variable stagebeam reads`).toBe(true);
        }
        const config = find(docs, "ConfigMap", "stagebeam-config").data;
        for (const secret of ["REDIS_URL", "S3_SECRET_ACCESS_KEY", "DASHBOARD_TOKEN"])
          expect(config, secret).not.toHaveProperty(secret);
      });

      it("gives each role settings it accepts, through envFrom of both", () => {
        const env = sharedEnv(docs);
        for (const role of ["worker", "exporter", "dashboard"]) {
          const d = find(docs, "Deployment", `stagebeam-${role}`);
          const [container] = d.spec.template.spec.containers;
          expect(container.args[0], role).toBe(role);
          expect(container.envFrom, role).toEqual([
            { configMapRef: { name: "stagebeam-config" } },
            { secretRef: { name: "stagebeam-secrets" } },
          ]);
          expect(() => loadConfig(env, ROLE_CONFIG_PARTS[role]!), role).not.toThrow();
        }
      });

      it("lets a worker finish or hand back its jobs before the kubelet kills it, and probes it on METRICS_PORT", () => {
        const worker = find(docs, "Deployment", "stagebeam-worker").spec.template.spec;
        const [container] = worker.containers;
        const graceFlag = container.args.indexOf("--grace");
        const graceSeconds = graceFlag < 0 ? DEFAULT_GRACE_MS / 1000 : Number(container.args[graceFlag + 1]);
        // The hand-back, closing the model and the metrics server come after the grace period.
        expect(worker.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(graceSeconds + 15);
        const metricsPort = Number(sharedEnv(docs).METRICS_PORT);
        expect(container.ports).toContainEqual({ name: "metrics", containerPort: metricsPort });
        expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "metrics" });
        expect(container.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "metrics" });
        expect(worker.topologySpreadConstraints.map((t: Doc) => t.topologyKey)).toContain("kubernetes.io/hostname");
        const cacheDir = sharedEnv(docs).MODEL_CACHE_DIR!;
        const mounts: Doc[] = container.volumeMounts;
        expect(
          mounts.some((m) => cacheDir.startsWith(`${m.mountPath}/`)),
          "MODEL_CACHE_DIR on a volume",
        ).toBe(true);
        expect(mounts.map((m) => m.mountPath)).toContain("/tmp");
        // The cache outlives the pods: a claim of the overlay, big enough for an 11B model in fp16 twice over (a refresh).
        const cacheMount = mounts.find((m) => cacheDir.startsWith(`${m.mountPath}/`))!;
        const cacheVolume = worker.volumes.find((v: Doc) => v.name === cacheMount.name);
        const claim = find(docs, "PersistentVolumeClaim", cacheVolume.persistentVolumeClaim.claimName).spec;
        expect(claim.accessModes).toEqual(["ReadWriteMany"]);
        expect(Number(/^(\d+)Gi$/.exec(claim.resources.requests.storage)![1])).toBeGreaterThanOrEqual((2 * 22) / 1.074);
        const gpus = container.resources.limits["nvidia.com/gpu"];
        expect(gpus).toBe(overlay === "gpu" ? 1 : undefined);
        expect(sharedEnv(docs).EXECUTION_PROVIDERS!.split(",")[0]).toBe(overlay === "gpu" ? "cuda" : "cpu");
      });

      it("scales the workers from zero on the recorded backlog, and monitors them", () => {
        const so = find(docs, "ScaledObject", "stagebeam-worker").spec;
        expect(so.scaleTargetRef.name).toBe("stagebeam-worker");
        expect(so.minReplicaCount).toBe(0);
        expect(so.maxReplicaCount).toBeGreaterThan(0);
        expect(so.cooldownPeriod).toBeGreaterThan(0);
        expect(so.triggers).toHaveLength(1);
        const [trigger] = so.triggers;
        expect(trigger.type).toBe("prometheus");
        expect(trigger.metadata.query).toBe("stagebeam:backlog_jobs");
        expect(Number(trigger.metadata.threshold)).toBeGreaterThan(0);
        expect(Number.isFinite(Number(trigger.metadata.activationThreshold))).toBe(true);
        const workerLabels = find(docs, "Deployment", "stagebeam-worker").spec.selector.matchLabels;
        expect(find(docs, "PodDisruptionBudget", "stagebeam-worker").spec.selector.matchLabels).toEqual(workerLabels);
        expect(find(docs, "PodMonitor", "stagebeam-worker").spec.selector.matchLabels).toEqual(workerLabels);
        expect(find(docs, "PodMonitor", "stagebeam-worker").spec.podMetricsEndpoints[0].port).toBe("metrics");
        const exporter = find(docs, "Service", "stagebeam-exporter");
        expect(find(docs, "ServiceMonitor", "stagebeam-exporter").spec.selector.matchLabels).toEqual(
          Object.fromEntries(Object.entries(exporter.metadata.labels).filter(([k]) => k !== "app.kubernetes.io/part-of")),
        );
      });
    });
  }
});
