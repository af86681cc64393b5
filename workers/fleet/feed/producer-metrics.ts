import { Counter, type Registry } from "prom-client";

/** The producer's own series (registered next to the shared ones). */
export function producerMetrics(registry: Registry) {
  return {
    itemsSubmitted: new Counter({
      name: "stagebeam_items_submitted_total",
      help: "Manifest lines the producer handled, by outcome: enqueued, skipped (already submitted), bad (recorded as failed), duplicate.",
      labelNames: ["outcome"] as const,
      registers: [registry],
    }),
    imagesStaged: new Counter({
      name: "stagebeam_images_staged_total",
      help: "Local images the producer staged in S3, by whether they had to be uploaded.",
      labelNames: ["uploaded"] as const,
      registers: [registry],
    }),
  };
}
export type ProducerMetrics = ReturnType<typeof producerMetrics>;
