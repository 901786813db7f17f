-- The demo catalog loaded by scripts/dev (not by the migrations). Re-running it
-- resets prices and stock to these values.
INSERT INTO products (sku, name, unit_price) VALUES
    ('WIDGET-1',  'Blue widget',            19.99),
    ('GADGET-2',  'Red gadget',             49.50),
    ('GIZMO-3',   'Pocket gizmo',            7.25),
    ('LAMP-4',    'Desk lamp',              34.00),
    ('CHAIR-5',   'Ergonomic chair',       329.00),
    ('LAPTOP-6',  'Developer laptop',     1899.00),
    ('CABLE-7',   'USB-C cable',             9.99),
    ('RARE-8',    'Limited edition print', 120.00)
ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, unit_price = EXCLUDED.unit_price, active = TRUE;

INSERT INTO inventory (sku, available) VALUES
    ('WIDGET-1', 1000), ('GADGET-2', 500), ('GIZMO-3', 2000), ('LAMP-4', 200),
    ('CHAIR-5', 50), ('LAPTOP-6', 20), ('CABLE-7', 5000), ('RARE-8', 3)
ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available, reserved = 0, updated_at = now();
