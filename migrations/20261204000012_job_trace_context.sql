-- The W3C `traceparent` of the span that accepted a job (a request, or a worker's job), so the
-- worker's spans for the job continue that trace. NULL when spans are not exported.
ALTER TABLE jobs ADD COLUMN traceparent TEXT;
