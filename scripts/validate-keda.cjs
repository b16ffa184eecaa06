// Validates the KEDA resources in the given YAML files against KEDA's CRD schemas, as the
// npm package @kubernetes-models/keda ships them (offline). Other kinds are left to
// kubernetes-validate. Exits non-zero naming every invalid resource.
// Usage: NODE_PATH=<dir with node_modules> node scripts/validate-keda.cjs FILE...
"use strict";
const fs = require("fs");
const YAML = require("yaml");
const models = {
  ScaledObject: require("@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject").ScaledObject,
  ScaledJob: require("@kubernetes-models/keda/keda.sh/v1alpha1/ScaledJob").ScaledJob,
  TriggerAuthentication: require("@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication")
    .TriggerAuthentication,
};
let checked = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of YAML.parseAllDocuments(fs.readFileSync(file, "utf8"))) {
    const resource = doc.toJS();
    if (!resource || resource.apiVersion !== "keda.sh/v1alpha1") continue;
    const Model = models[resource.kind];
    const name = `${file}: ${resource.kind}/${resource.metadata && resource.metadata.name}`;
    if (!Model) {
      console.error(`${name}: unknown KEDA kind`);
      process.exitCode = 1;
      continue;
    }
    try {
      new Model(resource).validate();
      checked += 1;
    } catch (err) {
      console.error(`${name}: ${err.message}`);
      process.exitCode = 1;
    }
  }
}
console.log(`${checked} KEDA resources valid`);
