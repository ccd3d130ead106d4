-- AlterEnum
ALTER TYPE "RunStatus" ADD VALUE 'DEFERRED';

-- AlterTable
ALTER TABLE "Connection" ADD COLUMN     "lastError" TEXT,
ADD COLUMN     "suspendedAt" TIMESTAMP(3);

-- AlterTable
ALTER TABLE "OAuthState" ADD COLUMN     "purpose" TEXT NOT NULL DEFAULT 'oauth';

-- CreateIndex
CREATE INDEX "Connection_installationId_idx" ON "Connection"("installationId");
