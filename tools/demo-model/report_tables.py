"""Print the markdown tables of demo/README.md that come from demo/data/validation_report.json.

train.py writes the report from the saved weights; this turns it into the README's "Validation loss",
"Multiple choice" and "Expert specialisation" tables, so that retraining never means copying numbers
by hand. Paste the output over those tables.

usage: report_tables.py [REPORT_JSON]   (default demo/data/validation_report.json)
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = os.path.join(HERE, "..", "..", "demo", "data", "validation_report.json")


def main():
    with open(sys.argv[1] if len(sys.argv) > 1 else DEFAULT) as f:
        report = json.load(f)
    out = []
    out += ["| Domain | Records | Predicted tokens | Mean loss (nats) | Perplexity |", "|---|---|---|---|---|"]
    for domain, v in report["validation"].items():
        out.append("| `%s` | %d | %d | %.4f | %.2f |" % (domain, v["records"], v["predicted_tokens"], v["mean_loss"], v["perplexity"]))
    out.append("")
    mc = report["multiple_choice"]["arithmetic-mc"]
    out.append("Accuracy: **%.1f%%** on %d items (chance %d%%)." % (100 * mc["accuracy"], mc["items"], round(100 * mc["chance"])))
    out.append("")
    jsd = report["jensen_shannon_bits"]
    layers = range(len(jsd))
    out += ["| Layer | %s |" % " | ".join(str(l) for l in layers), "|---|" + "---|" * len(jsd)]
    out.append("| JSD, all four domains (bits) | %s |" % " | ".join("%.3f" % x for x in jsd))
    for pair, values in report.get("pairwise_jensen_shannon_bits", {}).items():
        out.append("| %s (bits, max 1) | %s |" % (pair.replace("/", " vs "), " | ".join("%.3f" % x for x in values)))
    out.append("")
    usage = report["expert_usage"]
    experts = len(next(iter(usage.values()))[0])
    for layer in layers:
        out += ["Layer %d:" % layer, "", "| Domain | %s |" % " | ".join("E%d" % e for e in range(experts)), "|---|" + "---|" * experts]
        for domain, rows in usage.items():
            out.append("| `%s` | %s |" % (domain, " | ".join("%.2f" % x for x in rows[layer])))
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
