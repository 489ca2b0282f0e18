-- 0007_delivery_flow: beside its drops, a device declares per stream the
-- records its collectors handed to storage (collected) and those storage
-- accepted (stored), cumulative since its store `origin` began; the cloud
-- keeps their growth per hour in delivery and the last sums in
-- declared_drops, as it does with the drops.
ALTER TABLE delivery ADD COLUMN collected bigint NOT NULL DEFAULT 0;
ALTER TABLE delivery ADD COLUMN stored bigint NOT NULL DEFAULT 0;
ALTER TABLE declared_drops ADD COLUMN collected bigint NOT NULL DEFAULT 0;
ALTER TABLE declared_drops ADD COLUMN stored bigint NOT NULL DEFAULT 0;
