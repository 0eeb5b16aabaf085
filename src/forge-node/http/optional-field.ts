import { ValidateIf } from 'class-validator';

/**
 * The field may be left out, but if present it is validated, null included. class-validator's
 * @IsOptional() also lets `null` through, which then reaches the services as a value (a null
 * issue body hit SQLite's NOT NULL constraint: a 500).
 */
export const OptionalField = (): PropertyDecorator => ValidateIf((_object: object, value: unknown) => value !== undefined);
